#!/usr/bin/env python3
"""`make course`: execute every notebook and write a static HTML course with an index.

usage: python tools/build_course.py --out build/course NOTEBOOK...

Each notebook is executed in a fresh kernel (as in CI) and exported to one HTML page
with its figures embedded, so the course reads offline; index.html lists the sequence
with one line per notebook (the notebook's title and first sentence).
"""
from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import execute  # noqa: E402


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("build/course"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    rows = []
    for path in args.notebooks:
        nb, seconds = execute(path)
        body, _ = exporter.from_notebook_node(nb)
        page = path.with_suffix(".html").name
        (args.out / page).write_text(body, encoding="utf-8")
        title, line = title_and_line(nb)
        rows.append((page, title or path.stem, line))
        print(f"{path} -> {args.out / page} ({seconds:.1f} s)", flush=True)
    items = "\n".join(f'<li><a href="{html.escape(p)}">{html.escape(t)}</a><br><span>{html.escape(l)}</span></li>'
                      for p, t, l in rows)
    (args.out / "index.html").write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fully Convolutional Learning</title>
<style>body{{font-family:sans-serif;max-width:48em;margin:2em auto;line-height:1.4}}
li{{margin:.8em 0}} span{{color:#444}}</style></head>
<body><h1>Fully Convolutional Learning</h1>
<p>The course notebooks, executed. Run them yourself with <code>make lab</code>.</p>
<ol>
{items}
</ol></body></html>
""", encoding="utf-8")
    print(f"index: {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
