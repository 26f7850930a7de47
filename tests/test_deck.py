"""`make demos`: the demo deck in Voilà, as the lecture hall sees it (headless Chromium).

The test starts the deck the way ``make demos`` does (``tools/deck.py``: localhost only,
a token) on a random free port with a random token, checks that the server refuses a
request without the token, opens the page in Debian's chromium through Playwright, waits
until every demo has drawn its picture, then moves one control of every demo (types into a
slider's readout, picks another dropdown entry, ticks a checkbox) and asserts that the
picture's pixels change. It reports, per demo, the time from the control's event in the
page to the new picture arriving (kernel round trip included). Requests to anything but
the local server are aborted and reported. The screenshot is build/screenshots/deck.png.

Without chromium, playwright or voila the browser test is skipped with the reason;
deselect it with ``-m "not browser"``. The first two tests need no browser.
"""
from __future__ import annotations

import ast
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import IMG_DIGEST_JS, browser_tools, free_port, move_one_control, offline_context, stop_group

ROOT = Path(__file__).resolve().parents[1]
DECK = ROOT / "deck" / "demos.ipynb"
SHOTS = ROOT / "build" / "screenshots"
# Voilà runs the whole deck before the page shows it; the zoo's bootstrap statistics take
# most of that (about 20 s on a busy 2-core machine).
LOAD_TIMEOUT = float(os.environ.get("COURSE_DECK_TIMEOUT", "240"))
# A demo's outermost widget view in Voilà's lab template (as in JupyterLab).
DEMO_VIEW = ".jp-OutputArea-output:has(> .jupyter-widgets)"


def _code_cells() -> list[str]:
    return [c["source"] if isinstance(c["source"], str) else "".join(c["source"])
            for c in json.loads(DECK.read_text())["cells"] if c["cell_type"] == "code"]


def _called_names(source: str) -> set[str]:
    return {n.func.id for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _demo_cells() -> list[str]:
    from course_utils.widgets import DEMOS

    builders = {b.__name__ for b in DEMOS.values()}
    return [src for src in _code_cells() if _called_names(src) & builders]


def test_every_registered_demo_is_in_the_deck_once_per_cell():
    from course_utils.widgets import DEMOS

    builders = {b.__name__ for b in DEMOS.values()}
    used = [_called_names(src) & builders for src in _demo_cells()]
    assert all(len(u) == 1 for u in used), f"one demo per cell, so each sits under its slide: {used}"
    missing = builders - set().union(*used)
    assert not missing, f"registered demos missing from deck/demos.ipynb: {sorted(missing)}"
    nb = json.loads(DECK.read_text())
    assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), (
        "the deck is committed without outputs: Voilà executes it")
    assert "fit(" not in "".join(_code_cells()), "no training in the deck: zoo models load in a second"


def test_make_demos_runs_the_deck_on_localhost_with_a_token():
    dry = subprocess.run(["make", "-n", "--no-print-directory", "demos"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "tools/deck.py" in dry
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import deck
    finally:
        sys.path.pop(0)
    cmd = deck.command([])
    assert "--Voila.ip=127.0.0.1" in cmd and "--token" in cmd and str(DECK) in cmd


def _outbound_address() -> str | None:
    """This machine's address on its default route, if it has one that is not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def deck_server(tmp_path_factory):
    try:
        import voila  # noqa: F401
    except ImportError:
        pytest.skip("voila is not installed (pip install -e '.[deck]')")
    port, token = free_port(), secrets.token_hex(16)
    log = tmp_path_factory.mktemp("deck") / "voila.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "deck.py"), f"--port={port}", "--Voila.port_retries=0",
             "--no-browser", f"--Voila.token={token}"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                # Without the token: Voilà sends the login page (a redirect), not the deck.
                opener = urllib.request.build_opener(_NoRedirect)
                status = opener.open(f"{base}/", timeout=5).status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("the deck did not start:\n" + log.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
                continue
            break
        yield base, token, status
    finally:
        stop_group(proc)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_deck_refuses_requests_without_token_and_from_other_hosts(deck_server):
    base, _, status = deck_server
    assert status in (302, 401, 403), f"the deck answered {status} without a token"
    address = _outbound_address()
    if address is None:
        pytest.skip("no non-loopback address to try")
    port = int(base.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=3).close()


# Response time: from the event that commits a control change in the page (Enter or an
# arrow key, a dropdown's change, a click) to the demo's <img> receiving its new picture.
# Every commit and every new picture is recorded; the last picture minus the last commit
# before it is the response to the last action.
_WATCH_JS = """(img) => {
  window.__deckCommits = []; window.__deckPictures = [];
  if (!window.__deckListening) {
    const now = () => window.__deckCommits.push(performance.now());
    document.addEventListener('keydown', e => { if (/^(Enter|Arrow)/.test(e.key)) now(); }, true);
    document.addEventListener('change', now, true);
    document.addEventListener('click', now, true);
    window.__deckListening = true;
  }
  if (window.__deckObserver) window.__deckObserver.disconnect();
  window.__deckObserver = new MutationObserver(() => window.__deckPictures.push(performance.now()));
  window.__deckObserver.observe(img, {attributes: true, attributeFilter: ['src']});
}"""


def _response_ms(page) -> float | None:
    """Wait until the demo's picture has been quiet for a second; the last response time."""
    seen, deadline = -1, time.time() + 10
    while time.time() < deadline:
        pictures = page.evaluate("window.__deckPictures.length")
        if pictures == seen:
            break
        seen = pictures
        time.sleep(1.0)
    commits, pictures = page.evaluate("[window.__deckCommits, window.__deckPictures]")
    if not pictures:
        return None
    last = pictures[-1]
    before = [c for c in commits if c < last]
    return last - before[-1] if before else None


@pytest.mark.browser
def test_deck_shows_every_demo_and_each_answers_a_control(deck_server):
    chromium, sync_playwright = browser_tools()
    base, token, _ = deck_server
    expected = len(_demo_cells())
    page_errors: list[str] = []
    SHOTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = offline_context(pw, profile, chromium, rf"^{re.escape(base)}/", viewport=(1920, 1080))
        blocked = context.blocked
        try:
            page = context.new_page()
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            start = time.perf_counter()
            page.goto(f"{base}/?token={token}", timeout=LOAD_TIMEOUT * 1000)
            demos = page.locator(DEMO_VIEW)
            deadline = time.time() + LOAD_TIMEOUT
            while time.time() < deadline:
                shown = demos.locator("img.widget-image").evaluate_all(
                    "imgs => imgs.filter(i => i.src && i.naturalWidth > 0).length")
                if shown >= expected:
                    break
                time.sleep(0.5)
            loaded = time.perf_counter() - start
            assert demos.count() == expected, f"{expected} demos in the deck, {demos.count()} shown"
            assert shown == expected, f"after {LOAD_TIMEOUT:.0f} s only {shown} of {expected} demos drew a picture"
            body = page.locator("body").inner_text()
            assert "Traceback" not in body and "internal error" not in body, body[:2000]
            assert not page.locator(".jp-CodeCell .jp-InputArea").filter(has_text=re.compile(r"\S")).count(), (
                "code is shown: Voilà should strip the input")
            for src in _demo_cells():
                assert src.strip() not in body, "a code cell's source is visible"
            # Sized for a projector by the deck's template and dpi (20 px text, 120 dpi pictures).
            sizes = page.evaluate("""() => ({
                label: parseFloat(getComputedStyle(document.querySelector('.widget-label')).fontSize),
                prose: parseFloat(getComputedStyle(document.querySelector('.jp-RenderedMarkdown p')).fontSize),
                widths: Array.from(document.querySelectorAll('img.widget-image')).map(i => i.naturalWidth)})""")
            assert sizes["label"] >= 18 and sizes["prose"] >= 18, f"text too small for a projector: {sizes}"
            assert min(sizes["widths"]) >= 600, f"pictures too small for a projector: {sizes['widths']}"
            # Voilà scrolls inside the page, so a full-page shot needs a viewport that tall.
            height = page.evaluate("Math.max(...Array.from(document.querySelectorAll('body, body *'))"
                                   ".map(e => e.scrollHeight))")
            page.set_viewport_size({"width": 1920, "height": min(int(height), 16000)})
            page.screenshot(path=str(SHOTS / "deck.png"))
            page.set_viewport_size({"width": 1920, "height": 1080})

            report = []
            for k in range(expected):
                demo = demos.nth(k)
                demo.scroll_into_view_if_needed()
                image = demo.locator("img.widget-image").first
                before = image.evaluate(IMG_DIGEST_JS)
                assert before, f"demo {k} shows no picture"
                image.evaluate(_WATCH_JS)
                done = move_one_control(demo)
                deadline, after = time.time() + 30, before
                while time.time() < deadline and after == before:
                    time.sleep(0.05)
                    after = demo.locator("img.widget-image").first.evaluate(IMG_DIGEST_JS)
                assert after != before, f"demo {k}: {done}, but its picture did not change"
                dt = _response_ms(page)
                assert "internal error" not in demo.inner_text(), f"demo {k}: {demo.inner_text()}"
                heading = demo.evaluate("""d => {  // the slide title above the demo
                    const above = Array.from(document.querySelectorAll('h2')).filter(
                        h => h.compareDocumentPosition(d) & Node.DOCUMENT_POSITION_FOLLOWING);
                    return above.length ? above[above.length - 1].textContent : '?'; }""")
                report.append(f"{heading.strip(' ¶')[:60]!r}: {done}; new picture after "
                              + (f"{dt:.0f} ms" if dt is not None else "? ms"))
            assert not page_errors, f"JavaScript errors in the page: {page_errors}"
            assert not blocked, f"the page tried to reach the network: {blocked}"
            print(f"\nthe deck showed {expected} demos {loaded:.1f} s after the request "
                  f"(screenshot {SHOTS / 'deck.png'})")
            print("\n".join(report))
        finally:
            context.close()
