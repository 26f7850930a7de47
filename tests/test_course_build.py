"""`make course`: the static HTML course reads offline and every page, link and image resolves.

The test builds the course from the stored (already executed) notebooks with
``--no-execute``; ``make course`` executes them first, which changes the outputs' values,
not the page structure checked here.
"""
import base64
import json
import re
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# Attributes that make a browser fetch something to show the page (not navigation links).
RESOURCE_ATTRS = {("img", "src"), ("script", "src"), ("link", "href"), ("iframe", "src"),
                  ("source", "src"), ("video", "src"), ("audio", "src"), ("embed", "src"),
                  ("object", "data"), ("input", "src"), ("video", "poster"), ("image", "href"),
                  ("use", "href"), ("image", "xlink:href"), ("use", "xlink:href")}
SIGNATURES = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff", "gif": b"GIF8"}

sys.path.insert(0, str(ROOT / "tools"))
import build_course  # noqa: E402


class Page(HTMLParser):
    """Links, resources, ids, inline scripts and styles of one HTML page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.links, self.resources, self.ids = [], [], set()
        self.scripts, self.styles, self._in = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href") is not None:
            self.links.append(attrs["href"])
        for attr, value in attrs.items():
            if (tag, attr) in RESOURCE_ATTRS and value is not None:
                self.resources.append((tag, value))
            if attr == "srcset" and value:
                self.resources += [(tag, part.split()[0]) for part in value.split(",") if part.strip()]
            if attr == "style" and value:
                self.styles.append(value)
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    assert build_course.main(["--no-execute", "--out", str(out), *map(str, NOTEBOOKS)]) == 0
    pages = {p.name: Page(p.read_text(encoding="utf-8")) for p in out.glob("*.html")}
    return out, pages


def _check_data_uri(uri: str, where: str):
    head, _, payload = uri.partition(",")
    assert payload, f"{where}: empty data URI"
    kind = head[len("data:"):].split(";")[0]
    raw = base64.b64decode(payload, validate=True) if head.endswith(";base64") else unquote(payload).encode()
    sub = kind.split("/")[-1]
    if sub in SIGNATURES:
        assert raw.startswith(SIGNATURES[sub]), f"{where}: data URI says {kind} but is not one"
    elif sub.startswith("svg"):
        assert b"<svg" in raw[:2000], f"{where}: data URI says SVG but has no <svg>"


def _resolve(out: Path, page: str, ref: str, pages: dict, where: str):
    """A local reference must name an existing file, and its #fragment an existing id."""
    parts = urlsplit(ref)
    target = page if not parts.path else parts.path
    assert not target.startswith("/"), f"{where}: absolute path {ref!r} breaks when the course moves"
    path = (out / unquote(target)).resolve()
    assert path.is_file(), f"{where}: {ref!r} does not exist"
    if parts.fragment and path.suffix == ".html":
        # As browsers do: the fragment as written, else percent-decoded (nbconvert's ids
        # are themselves percent-encoded).
        ids = pages[path.name].ids
        assert parts.fragment in ids or unquote(parts.fragment) in ids, f"{where}: no anchor for {ref!r}"


def test_make_course_executes_and_writes_build_course():
    dry = subprocess.run(["make", "-n", "--no-print-directory", "course"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "tools/build_course.py --out build/course" in dry and "--no-execute" not in dry


def test_index_lists_the_sequence(course):
    out, pages = course
    index = pages["index.html"]
    expected = [p.with_suffix(".html").name for p in NOTEBOOKS]
    assert index.links == expected, "index.html links every notebook once, in course order"
    assert set(expected) <= set(pages)
    text = (out / "index.html").read_text()
    assert text.count("<li>") == len(NOTEBOOKS)


@pytest.mark.parametrize("name", [p.with_suffix(".html").name for p in NOTEBOOKS] + ["index.html"])
def test_every_link_and_image_resolves_offline(course, name):
    out, pages = course
    page = pages[name]
    for tag, ref in page.resources:
        where = f"{name} <{tag}>"
        assert not re.match(r"^(https?:)?//", ref), f"{where}: needs the network: {ref[:80]}"
        if ref.startswith("data:"):
            _check_data_uri(ref, where)
        else:
            _resolve(out, name, ref, pages, where)
    for ref in page.links:
        if re.match(r"^(https?|mailto):", ref):
            continue  # a reference to read further, not needed to read the page
        assert not ref.startswith("//"), f"{name}: protocol-relative link {ref!r}"
        _resolve(out, name, ref, pages, f"{name} <a>")
    for script in page.scripts:
        assert not re.search(r"https?://", script), f"{name}: a script loads from the network: {script[:200]}"
    for css in page.styles:
        css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)  # comments cite URLs; they load nothing
        for ref in re.findall(r"url\(\s*['\"]?([^'\")]+)", css) + re.findall(r"@import\s+['\"]([^'\"]+)", css):
            assert not re.match(r"^(https?:)?//", ref), f"{name}: CSS needs the network: {ref[:80]}"
            if ref.startswith("data:"):
                _check_data_uri(ref, f"{name} CSS")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_and_widgets_are_in_the_page(course, path):
    out, pages = course
    html = (out / path.with_suffix(".html").name).read_text(encoding="utf-8")
    outputs = [o for c in json.loads(path.read_text())["cells"] for o in c.get("outputs", [])]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    widgets = sum(WIDGET_MIME in o.get("data", {}) for o in outputs)
    embedded = len(re.findall(r'src="data:image/png;base64,', html))
    assert embedded >= figures + widgets, f"{path.name}: {figures} figures + {widgets} widgets, {embedded} images"
    assert html.count('class="course-static-widget"') == widgets
    assert WIDGET_MIME not in html and "widget-state+json" not in html, "no widget JavaScript is needed"
    title = build_course.title_and_line(nbformat.read(path, as_version=4))[0]
    shown = re.search(r"<title>(.*?)</title>", html, re.S)
    assert title and shown and unescape(shown.group(1)) == title, f"{path.name}: the page is titled by its heading"


# -- math: typeset by the course's own copy of MathJax, with the network refused -----------
MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+?\$", re.S)
# MathJax 2 has finished when its queue has run a callback queued after the typesetting.
_MATHJAX_DONE_JS = """() => {
  if (!(window.MathJax && MathJax.Hub && MathJax.Hub.Queue)) return false;
  if (window.__courseTypeset === undefined) {
    window.__courseTypeset = false;
    MathJax.Hub.Queue(() => { window.__courseTypeset = true; });
  }
  return window.__courseTypeset;
}"""


def _formulas(path: Path) -> list[str]:
    """The $...$ and $$...$$ spans of a notebook's markdown, code spans and fences removed."""
    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            text = re.sub(r"```.*?```|`[^`\n]*`", "", cell.source, flags=re.S)
            found += MATH.findall(text)
    return found


@pytest.mark.browser
def test_formulas_of_notebook_01_are_typeset_offline(course):
    from helpers import browser_tools, offline_context

    chromium, sync_playwright = browser_tools()
    out, _ = course
    notebook = ROOT / "notebooks" / "01_upsampling.ipynb"
    formulas = _formulas(notebook)
    assert len(formulas) >= 5, f"notebook 01 should have formulas to typeset; found {formulas}"
    import tempfile

    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = offline_context(pw, profile, chromium, r"^(file:|data:|blob:|https?://(127\.0\.0\.1|localhost)[:/])")
        blocked = context.blocked
        try:
            page = context.new_page()
            page.goto((out / notebook.with_suffix(".html").name).as_uri())
            page.wait_for_function(_MATHJAX_DONE_JS, timeout=60_000, polling=200)
            found = page.evaluate("""() => ({
                typeset: document.querySelectorAll('[id^="MathJax-Element-"][id$="-Frame"]').length,
                errors: document.querySelectorAll('.MathJax_Error, merror').length,
                text: Array.from(document.querySelectorAll('.jp-RenderedMarkdown')).map(e => e.innerText).join('\\n'),
                warning: (document.getElementById('MathJax_Font_Warning') || {}).innerText || '',
                font: MathJax.OutputJax['HTML-CSS'] ? MathJax.OutputJax['HTML-CSS'].fontInUse : null,
                faces: Array.from(document.fonts).filter(f => f.status === 'loaded').map(f => f.family)})""")
            first = page.locator('[id^="MathJax-Element-"][id$="-Frame"]').first
            first.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "course_math.png"))
        finally:
            context.close()
    assert found["typeset"] >= len(formulas), (
        f"{len(formulas)} formulas in notebook 01's markdown, {found['typeset']} typeset by MathJax")
    raw = MATH.findall(found["text"])
    assert not raw, f"formulas left as TeX source: {raw[:5]}"
    assert not found["errors"], f"{found['errors']} MathJax errors"
    assert not found["warning"], f"MathJax font warning: {found['warning']}"
    # Typeset in the STIX web fonts of the local copy, not in whatever the system falls back to.
    assert found["font"] == "STIX-Web" and any(f.startswith("STIXMathJax") for f in found["faces"]), (
        f"MathJax font {found['font']!r}, loaded faces {found['faces']}")
    assert not blocked, f"the page tried to reach the network: {blocked}"
