#!/usr/bin/env python3
"""`make course`: execute every notebook and write a static HTML course with an index.

usage: python tools/build_course.py [--out build/course] [--no-execute] NOTEBOOK...
       python tools/build_course.py --demos NOTEBOOK...   (the demo table of docs/instructors.md)

Each notebook is executed in a fresh kernel (as in CI; --no-execute uses the stored
outputs instead) and exported to one HTML page that reads offline: figures and markdown
images are embedded as data URIs, the CDN scripts of nbconvert's lab template (require.js,
Mermaid, the widget renderer) are left out, and each widget is shown as the picture and
control values it had when the notebook finished, from the stored widget state. Math is
typeset by MathJax 2 from a local copy, ``mathjax/`` next to the pages, taken from the
jupyter-server-mathjax package (the MathJax that Jupyter servers ship), instead of
nbconvert's CDN. index.html lists the sequence with one line per notebook (its title and
first sentence); every page links to the index and to its neighbours.
"""
from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import execute  # noqa: E402

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
DEMO_CALL = re.compile(r"\b(\w+_demo)\(")

# MathJax 2 as jupyter-server-mathjax packages it, with the combined configuration it
# ships (TeX and MathML input, HTML-CSS output; "Safe" as in nbconvert's default URL).
# The package carries the STIX-Web fonts only (not MathJax's default TeX fonts), so the
# output is told to use them, as Jupyter Notebook configured it for this package.
MATHJAX_DIR = "mathjax"
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
MATHJAX_FONTS = """<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
                                 imageFont: null, linebreaks: {automatic: true}}});
</script>"""

# nbconvert's lab template minus every block that loads a script from a CDN; its MathJax
# block stays and loads MATHJAX_URL, the local copy.
COURSE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{{ super() }}
""" + MATHJAX_FONTS + """
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style>
.course-nav{font-family:sans-serif;padding:.6em 1em;border-bottom:1px solid #ddd;background:#fafafa}
.course-nav a{margin-right:1.2em}
.course-static-widget{border:1px solid #ddd;padding:.5em;display:inline-block}
.course-static-widget p{font-family:sans-serif;font-size:90%;color:#444;margin:.2em 0 .5em}
</style>
{%- endblock extra_css -%}
"""


def title_and_line(nb) -> tuple[str, str]:
    """The first heading and the first sentence of the first markdown cell's prose."""
    first_md = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    title, prose = "", []
    for line in first_md.splitlines():
        if line.startswith("#") and not title:
            title = line.lstrip("# ").strip()
        elif line.strip() and title:
            prose.append(line.strip())
    text = " ".join(prose)
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0] if text else ""
    return title, re.sub(r"[*_`]", "", sentence)


def demos_used(nb) -> list[str]:
    """Names of the ``*_demo()`` builders a notebook's code cells call, in order."""
    found: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            found += [n for n in DEMO_CALL.findall(cell.source) if n not in found]
    return found


# -- widgets as still pictures ------------------------------------------------------------
def _walk(model_id: str, state: dict, seen: set) -> list[dict]:
    """The widget models under ``model_id`` in display order (children depth first)."""
    model = state.get(model_id)
    if model is None or model_id in seen:
        return []
    seen.add(model_id)
    found = [model]
    children = model.get("state", {}).get("children", [])
    for ref in children if isinstance(children, list) else []:
        if isinstance(ref, str) and ref.startswith("IPY_MODEL_"):
            found += _walk(ref.removeprefix("IPY_MODEL_"), state, seen)
    return found


def _control_value(s: dict):
    if "index" in s and isinstance(s.get("_options_labels"), list) and isinstance(s["index"], int):
        return s["_options_labels"][s["index"]]
    return s.get("value")


def static_widget(model_id: str, state: dict) -> str | None:
    """HTML showing a widget's last picture and control values, or None if none is stored."""
    controls, messages, images = [], [], []
    for model in _walk(model_id, state, set()):
        name, s = model.get("model_name", ""), model.get("state", {})
        if name == "ImageModel":
            data = next((b["data"] for b in model.get("buffers", []) if b.get("path") == ["value"]), None)
            if data:
                images.append(f'<img alt="the demo\'s picture" src="data:image/{s.get("format", "png")};base64,{data}">')
        elif name in ("HTMLModel", "HTMLMathModel", "LabelModel"):
            if s.get("value"):
                messages.append(f"<p>{s['value'] if name != 'LabelModel' else html.escape(s['value'])}</p>")
        elif s.get("description") and ("value" in s or "index" in s):
            controls.append(f"{s['description']} = {_control_value(s)}")
    if not images:
        return None
    settings = f" ({html.escape(', '.join(controls))})" if controls else ""
    note = (f"<p>Interactive demo, shown here as a still picture{settings}. "
            "Run the notebook in JupyterLab to move its controls.</p>")
    return f'<div class="course-static-widget">{note}{"".join(messages)}{"".join(images)}</div>'


def freeze_widgets(nb) -> int:
    """Replace widget outputs by still pictures and drop the widget state; return how many."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    frozen = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            still = static_widget(view.get("model_id", ""), state)
            del out.data[WIDGET_VIEW]
            out.data["text/html"] = still or (
                '<p class="course-static-widget">Interactive demo: run the notebook in JupyterLab to use it.</p>')
            frozen += 1
    return frozen


# -- pages --------------------------------------------------------------------------------
def link_pages(body: str, pages: set[str]) -> str:
    """Point links to course notebooks (``02_x.ipynb``) at their pages (``02_x.html``)."""
    def repl(m):
        target = Path(m.group(2)).name
        page = target[:-len(".ipynb")] + ".html"
        return f'{m.group(1)}{page}{m.group(3) or ""}"' if page in pages else m.group(0)
    return re.sub(r'(href=")((?![a-z]+:)[^"#?]*\.ipynb)(#[^"]*)?"', repl, body)


def nav_bar(pages: list[str], titles: dict[str, str], i: int) -> str:
    links = ['<a href="index.html">Course index</a>']
    if i > 0:
        links.append(f'<a href="{pages[i - 1]}">&larr; {html.escape(titles[pages[i - 1]])}</a>')
    if i + 1 < len(pages):
        links.append(f'<a href="{pages[i + 1]}">{html.escape(titles[pages[i + 1]])} &rarr;</a>')
    return f'<nav class="course-nav">{"".join(links)}</nav>'


def index_page(rows) -> str:
    items = []
    for page, title, line, demos in rows:
        extra = f" <em>Demo: {html.escape(', '.join(demos))}.</em>" if demos else ""
        items.append(f'<li><a href="{html.escape(page)}">{html.escape(title)}</a><br>'
                     f'<span>{html.escape(line)}{extra}</span></li>')
    return """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fully Convolutional Learning</title>
<style>body{font-family:sans-serif;max-width:48em;margin:2em auto;line-height:1.4}
li{margin:.8em 0} span{color:#444}</style></head>
<body><h1>Fully Convolutional Learning</h1>
<p>The course notebooks, executed. Run them yourself with <code>make lab</code>: in
JupyterLab the demos answer their controls; here they are still pictures.</p>
<ol>
%s
</ol></body></html>
""" % "\n".join(items)


def copy_mathjax(out: Path) -> Path:
    """Copy MathJax (from the jupyter-server-mathjax package) to ``out/mathjax``."""
    source = resources.files("jupyter_server_mathjax") / "static"
    if not source.joinpath("MathJax.js").is_file():
        raise FileNotFoundError(f"no MathJax.js in {source}: is jupyter-server-mathjax installed?")
    target = out / MATHJAX_DIR
    shutil.copytree(str(source), target, dirs_exist_ok=True)
    return target


def build(notebooks: list[Path], out: Path, run: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    copy_mathjax(out)
    exporter = HTMLExporter(template_name="lab", embed_images=True, mathjax_url=MATHJAX_URL,
                            extra_loaders=[DictLoader({"course.html.j2": COURSE_TEMPLATE})],
                            template_file="course.html.j2")
    loaded = []
    for path in notebooks:
        if run:
            nb, seconds = execute(path)
            print(f"{path}: executed in {seconds:.1f} s", flush=True)
        else:
            nb = nbformat.read(path, as_version=4)
        loaded.append((path, nb))
    pages = [path.with_suffix(".html").name for path, _ in loaded]
    titles = {page: title_and_line(nb)[0] or path.stem for page, (path, nb) in zip(pages, loaded)}
    rows, written = [], []
    for i, (page, (path, nb)) in enumerate(zip(pages, loaded)):
        title, line = title_and_line(nb)
        demos = demos_used(nb)
        frozen = freeze_widgets(nb)
        body, _ = exporter.from_notebook_node(
            nb, resources={"metadata": {"name": titles[page], "path": str(path.parent)}})
        body = link_pages(body, set(pages))
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav_bar(pages, titles, i), body, count=1)
        (out / page).write_text(body, encoding="utf-8")
        written.append(out / page)
        rows.append((page, titles[page], line, demos))
        print(f"{path} -> {out / page} ({frozen} widgets as still pictures)", flush=True)
    (out / "index.html").write_text(index_page(rows), encoding="utf-8")
    written.append(out / "index.html")
    print(f"index: {out / 'index.html'}")
    return written


def demo_table(notebooks: list[Path]) -> str:
    """A markdown table: every registered demo, the notebook that shows it, what it is."""
    from course_utils.widgets import DEMOS

    shown: dict[str, list[str]] = {}  # builder -> notebooks, in course order
    for path in notebooks:
        for builder in demos_used(nbformat.read(path, as_version=4)):
            shown.setdefault(builder, []).append(path.stem)
    by_builder = {b.__name__: b for b in DEMOS.values()}
    order = list(shown) + sorted(set(by_builder) - set(shown))
    lines = ["| demo | shown in | what it shows |", "|---|---|---|"]
    for name in order:
        if name not in by_builder:
            continue  # a *_demo() call that is not a registered demo
        doc = (by_builder[name].__doc__ or "").strip().splitlines()
        where = ", ".join(shown.get(name, [])) or "(no notebook yet)"
        lines.append(f"| `{name}()` | {where} | {doc[0] if doc else ''} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("build/course"))
    parser.add_argument("--no-execute", action="store_true",
                        help="export the stored outputs instead of executing the notebooks")
    parser.add_argument("--demos", action="store_true",
                        help="print the instructor table of demos (markdown) and exit")
    args = parser.parse_args(argv)
    if args.demos:
        print(demo_table(args.notebooks))
        return 0
    build(args.notebooks, args.out, run=not args.no_execute)
    return 0


if __name__ == "__main__":
    sys.exit(main())
