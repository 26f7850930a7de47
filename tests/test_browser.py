"""The course where students meet it: JupyterLab in a real browser (headless Chromium).

For every notebook that shows a widget, the test starts ``make lab`` on localhost with a
random token, opens a copy of the notebook (under ``build/browser/``, so the committed
reference is never touched), runs all cells through JupyterLab's Run menu, waits
for the kernel to go idle, and asserts that no cell shows an error and that every widget
rendered its picture. Then, per widget, it moves one control the way a person would
(types into a slider's readout and presses Enter, picks another dropdown entry, ticks a
checkbox) and asserts that the picture's pixels change. Screenshots go to
``build/screenshots/``.

The browser is Debian's ``chromium`` driven by the Python Playwright package; nothing is
downloaded. Without either, the test is skipped with the reason. Deselect it with
``-m "not browser"``. Requests from the page to anything but the local server are
aborted and reported, so the lab is also shown to work offline.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import browser_tools as _browser_tools
from helpers import offline_context, stop_group
from helpers import IMG_DIGEST_JS as _IMG_DIGEST_JS
from helpers import free_port as _free_port
from helpers import move_one_control as _move_one_control

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
SHOTS = ROOT / "build" / "screenshots"
COPIES = ROOT / "build" / "browser"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# A cell's output that JupyterLab's widget manager rendered into a widget view.
WIDGET_VIEW = ".jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output:has(> .jupyter-widgets)"
# A notebook's budget is 3 min under nbval; the browser adds page and widget overhead.
RUN_TIMEOUT = float(os.environ.get("COURSE_BROWSER_TIMEOUT", "420"))
# JupyterLab settings for the test's private settings directory: no autosave (the test must
# never rewrite a committed notebook), every cell in the DOM, no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}

pytestmark = pytest.mark.browser


def _has_widget(path: Path) -> bool:
    cells = json.loads(path.read_text())["cells"]
    return any(WIDGET_MIME in out.get("data", {}) for c in cells for out in c.get("outputs", []))


WIDGET_NOTEBOOKS = [p for p in NOTEBOOKS if _has_widget(p)]


def _skip(reason: str):
    print(f"\nSKIP browser test: {reason}")
    pytest.skip(reason)


class Lab:
    def __init__(self, port: int, token: str, proc: subprocess.Popen, log: Path):
        self.port, self.token, self.proc, self.log = port, token, proc, log
        self.base = f"http://127.0.0.1:{port}"

    def api(self, method: str, path: str):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")


@pytest.fixture(scope="module")
def browser_tools():
    """Debian's chromium and Playwright's sync API, or a skip saying which is missing."""
    return _browser_tools()


@pytest.fixture(scope="module")
def lab(browser_tools, tmp_path_factory):
    if not (ROOT / ".venv" / "bin" / "jupyter").exists():
        _skip("make lab needs the .venv (run make install-test)")
    home = tmp_path_factory.mktemp("lab")
    settings = home / "settings"
    for rel, values in LAB_SETTINGS.items():
        target = settings / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    extra = " ".join([
        "--no-browser", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ])
    log = home / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_EXTRA={extra}"], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Lab(port, token, proc, log)
    try:
        deadline = time.time() + 90
        while True:
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + log.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
        yield server
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def browser_context(browser_tools, lab):
    chromium, sync_playwright = browser_tools
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = offline_context(pw, profile, chromium, rf"^https?://(127\.0\.0\.1|localhost):{lab.port}/")
        try:
            yield context
        finally:
            context.close()


# -- what a person sees, read from the page ---------------------------------------------
# The notebook panel showing ``path`` (the app is exposed by --LabApp.expose_app_in_browser).
_PANEL_JS = """(path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.content.model) return w;
  }
  return null;
}"""

_STATE_JS = """(path) => {
  const find = %s;
  const w = find(path);
  if (!w || !w.sessionContext.session || !w.sessionContext.session.kernel) return null;
  const prompts = Array.from(w.node.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
      .map(p => p.textContent.trim());
  const errors = [];
  const cells = w.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    for (const out of cell.outputs.toJSON()) {
      if (out.output_type === 'error') errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
    }
  }
  let widgets = 0;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    widgets += cell.outputs.toJSON().filter(o => o.data && o.data['%s']).length;
  }
  return {kernel: w.sessionContext.session.kernel.status, prompts, errors, widgets};
}""" % (_PANEL_JS, WIDGET_MIME)


def _wait_idle(page, rel: str, timeout: float) -> dict:
    """Poll until the kernel is idle and no cell waits ('[*]'), twice in a row."""
    deadline, calm, state = time.time() + timeout, 0, None
    while time.time() < deadline:
        state = page.evaluate(_STATE_JS, rel)
        busy = (state is None or state["kernel"] != "idle"
                or any("*" in p for p in state["prompts"])
                or not state["prompts"] or state["prompts"][0] in ("[ ]:", ""))
        calm = 0 if busy else calm + 1
        if calm >= 2:
            return state
        time.sleep(0.5)
    pytest.fail(f"{rel}: the kernel was still busy after {timeout:.0f} s (last state {state})")


@pytest.mark.skipif(not WIDGET_NOTEBOOKS, reason="no notebook shows a widget")
@pytest.mark.parametrize("path", WIDGET_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_jupyterlab_and_widgets_answer(lab, browser_context, path):
    # A copy, so neither JupyterLab (checkpoints, saves) nor this test can ever touch the
    # committed reference, which other people may be rewriting meanwhile.
    COPIES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, COPIES / path.name)
    rel = f"{COPIES.relative_to(ROOT).as_posix()}/{path.name}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser_context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    start = time.perf_counter()
    try:
        page.goto(f"{lab.base}/lab/tree/{rel}?token={lab.token}")
        page.wait_for_function(f"() => ({_PANEL_JS})({json.dumps(rel)}) !== null", timeout=90_000)
        page.evaluate(f"""async () => {{
            const w = ({_PANEL_JS})({json.dumps(rel)});
            await w.context.ready; await w.sessionContext.ready;
        }}""")
        # The Run menu, as a person would.
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).first.click()
        state = _wait_idle(page, rel, RUN_TIMEOUT)
        ran = time.perf_counter() - start
        page.screenshot(path=str(SHOTS / f"{path.stem}.png"))

        assert not state["errors"], f"{rel}: error output shown: {state['errors']}"
        assert all(re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"]), (
            f"{rel}: not every code cell ran: {state['prompts']}")
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        assert not panel.get_by_text("Traceback (most recent call last)").count()
        assert state["widgets"] >= 1, f"{rel}: no widget output after running (stored outputs have one)"
        widgets = panel.locator(WIDGET_VIEW)
        deadline = time.time() + 30
        while widgets.count() < state["widgets"] and time.time() < deadline:
            time.sleep(0.2)
        assert widgets.count() == state["widgets"], (
            f"{rel}: {state['widgets']} widget outputs, {widgets.count()} rendered")
        assert not panel.get_by_text(re.compile("Error displaying widget|Error rendering")).count()

        report = []
        for k in range(widgets.count()):
            widget = widgets.nth(k)
            widget.scroll_into_view_if_needed()
            if not widget.locator("select, input, button, .widget-readout").count():
                continue  # display only (e.g. a progress bar): nothing to move
            image = widget.locator("img").first
            image.wait_for(state="visible", timeout=30_000)
            before = image.evaluate(_IMG_DIGEST_JS)
            assert before, f"{rel}: widget {k} shows no picture"
            done = _move_one_control(widget)
            deadline = time.time() + 30
            after = before
            while time.time() < deadline and after == before:
                time.sleep(0.2)
                after = widget.locator("img").first.evaluate(_IMG_DIGEST_JS)
            widget.screenshot(path=str(SHOTS / f"{path.stem}_widget{k}.png"))
            assert after != before, f"{rel}: widget {k}: {done}, but its picture did not change"
            assert "internal error" not in widget.inner_text(), f"{rel}: widget {k}: {widget.inner_text()}"
            report.append(done)
        assert report, f"{rel}: no widget with controls to move"
        assert not page_errors, f"{rel}: JavaScript errors in the page: {page_errors}"
        assert not browser_context.blocked, f"the page tried to reach the network: {browser_context.blocked}"
        print(f"\n{rel}: ran in {ran:.1f} s in JupyterLab; " + "; ".join(report))
    finally:
        page.close()
        lab.shutdown_kernels()
