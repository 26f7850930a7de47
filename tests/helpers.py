"""Small helpers shared by several test modules (pytest puts tests/ on sys.path)."""
from datetime import datetime

from course_utils.models import build_model


def small(name, num_classes=5, **options):
    """A narrow model (width 8 unless given): the shapes and the code paths, fast."""
    options.setdefault("width", 8)
    return build_model(name, num_classes, **options)


def stored_seconds(cells) -> float:
    """Execution time of notebook ``cells``, as recorded in their metadata by the last `make refs`."""
    total = 0.0
    for cell in cells:
        ex = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
            t0, t1 = (datetime.fromisoformat(ex[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
            total += (t1 - t0).total_seconds()
    return total


# -- browser tests (test_browser.py: JupyterLab; test_deck.py: the Voilà deck) --------------
# Debian's chromium, driven by Playwright's Python package; nothing is downloaded.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# A digest of the pixels an <img> shows: a new blob URL alone would not prove a new picture.
IMG_DIGEST_JS = """async (img) => {
  if (!img.src) return '';
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  let h = 0;
  for (let i = 0; i < bytes.length; i++) h = (Math.imul(h, 31) + bytes[i]) | 0;
  return bytes.length + ':' + h;
}"""


def chromium_path():
    """Debian's chromium, or None."""
    import shutil

    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def move_one_control(widget) -> str:
    """Change the first control of a widget view a person can change; return what was done.

    A slider gets a number typed into its readout (then Enter); if the slider snapped that
    back to its step (e.g. 199 on a slider stepping by 10), one arrow key moves it one step,
    as the keyboard would.
    """
    import time

    import pytest

    for control in widget.locator(".widget-inline-hbox, .widget-hbox > .widget-toggle-buttons,"
                                  " .widget-checkbox").all():
        classes = control.get_attribute("class") or ""
        readout = control.locator(".widget-readout")
        if "widget-slider" in classes and readout.count():
            handle = control.locator(".noUi-handle").first
            low, high = float(handle.get_attribute("aria-valuemin")), float(handle.get_attribute("aria-valuemax"))
            now = float(handle.get_attribute("aria-valuenow"))
            integer = all(float(v).is_integer() for v in (low, high, now))
            new = now + 1 if integer and now + 1 <= high else now - 1 if integer else (now + high) / 2
            text = str(int(new)) if integer else f"{new:.3g}"
            readout.first.click()
            readout.first.press("Control+a")
            readout.first.type(text)
            readout.first.press("Enter")
            label = control.inner_text().splitlines()[0]
            for _ in range(10):  # the view takes the typed value at once, or not at all
                if float(handle.get_attribute("aria-valuenow")) != now:
                    break
                time.sleep(0.05)
            else:
                handle.focus()
                handle.press("ArrowLeft" if now >= high else "ArrowRight")
                return f"slider {label!r}: typed {text}, snapped back; pressed an arrow key"
            return f"slider {label!r}: typed {text} into the readout"
        select = control.locator("select")
        if select.count():
            options = select.first.locator("option").all_inner_texts()
            current = select.first.evaluate("s => s.selectedIndex")
            choice = (current + 1) % len(options)
            select.first.select_option(index=choice)
            return f"dropdown: picked {options[choice].replace(chr(160), ' ')!r}"
        box = control.locator("input[type=checkbox]")
        if box.count():
            box.first.click()
            return "checkbox: toggled"
        buttons = control.locator("button:not(.mod-active)")
        if buttons.count():
            buttons.first.click()
            return f"toggle buttons: pressed {buttons.first.inner_text()!r}"
    pytest.fail("no control this test knows how to move (slider, dropdown, checkbox, toggle buttons)")


def offline_context(pw, profile, chromium, allowed: str, viewport=(1280, 900)):
    """A headless Chromium context that lets through only URLs matching ``allowed`` (a
    regular expression) and aborts every other request, recording it in ``context.blocked``:
    what the course shows must not need the network."""
    import re

    allowed_re = re.compile(allowed)
    context = pw.chromium.launch_persistent_context(
        profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
        viewport={"width": viewport[0], "height": viewport[1]})
    context.blocked = []

    def guard(route):
        if allowed_re.match(route.request.url):
            route.continue_()
        else:
            context.blocked.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    return context


def browser_tools():
    """``(chromium path, playwright's sync_playwright)``, or a pytest skip naming what is missing."""
    import pytest

    chromium = chromium_path()
    if chromium is None:
        print("\nSKIP browser test: Debian's chromium is not installed")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("\nSKIP browser test: the playwright package is not installed")
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    return chromium, sync_playwright


def stop_group(proc, grace_s: float = 30) -> None:
    """Stop a server started with ``start_new_session=True``: its whole process group,
    politely first (SIGTERM), then for sure (SIGKILL)."""
    import os
    import signal
    import subprocess

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class InterruptAt:
    """A callback that presses Ctrl-C after a given step."""

    def __init__(self, step):
        self.step = step

    def __call__(self, trainer, event):
        if event == "step" and trainer.step == self.step:
            raise KeyboardInterrupt


def assert_same_values_and_gradients(y, ref, inputs, generator, atol=1e-12, grad_atol=1e-11):
    """``y`` equals ``ref`` (float64), and so do the gradients of a random weighted sum of each
    with respect to ``inputs``."""
    import torch

    torch.testing.assert_close(y, ref, rtol=0, atol=atol)
    weights = torch.randn(y.shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((y * weights).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * weights).sum(), inputs)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=grad_atol)
