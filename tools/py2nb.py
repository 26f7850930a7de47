#!/usr/bin/env python3
"""Authoring aid: turn a percent-format script into an unexecuted notebook.

usage: python tools/py2nb.py SOURCE.py notebooks/NN_name.ipynb

Cells start with ``# %%`` (code) or ``# %% [markdown]``; tags follow as
``# %% tags=["nbval-ignore-output"]``. Markdown lines lose their leading ``# ``.
Then run ``make refs`` (or tools/run_notebooks.py --inplace) to execute it; the
.ipynb, with outputs, is what is committed and what nbval checks.
"""
import json
import re
import sys
from pathlib import Path

import nbformat

HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def convert(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    cell = None
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            if cell is not None:
                nb.cells.append(cell)
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            cell = nbformat.v4.new_markdown_cell() if m.group("md") else nbformat.v4.new_code_cell()
            cell.source = ""
            if tags:
                cell.metadata["tags"] = tags
            continue
        if cell is None:
            continue
        if cell.cell_type == "markdown":
            line = line[2:] if line.startswith("# ") else line.lstrip("#")
        cell.source += line + "\n"
    if cell is not None:
        nb.cells.append(cell)
    for c in nb.cells:
        c.source = c.source.strip("\n")
    nb.cells = [c for c in nb.cells if c.source]
    return nb


if __name__ == "__main__":
    src, dst = map(Path, sys.argv[1:3])
    nbformat.write(convert(src.read_text()), dst)
    print(f"wrote {dst}")
