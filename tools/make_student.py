#!/usr/bin/env python3
"""`make student`: student copies of the notebooks, with the reference solutions removed.

usage: python tools/make_student.py --out build/student NOTEBOOK...

Every code cell tagged ``solution`` keeps its shape but loses its answer: each top-level
``name = <solution>`` becomes ``name = ...  # your answer here`` and each function keeps
its signature with a body of ``...``, so the following ``check(...)`` cell still runs
and replies "not yet" until the student fills it in. All outputs, execution counts and
the stored widget state are cleared: students run the copy themselves.
"""
from __future__ import annotations

import argparse
import ast
import copy
import sys
from pathlib import Path

import nbformat

PLACEHOLDER = "...  # your answer here"
HEADER = "# Your answer: replace each ... below, then run this cell and the check below it."


def _assigned_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _assigned_names(elt)]
    return []


def blank_solution(source: str) -> str:
    """The student's version of a solution cell: the same names, no answers."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return HEADER + "\n"
    lines = [HEADER]
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in _assigned_names(target):
                    line = f"{name} = {PLACEHOLDER}"
                    if line not in lines:
                        lines.append(line)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # Keep the signature (and docstring): that is the exercise's specification.
            stub = copy.copy(node)
            keep = node.body[:1] if ast.get_docstring(node) is not None else []
            stub.body = keep + [ast.Expr(ast.Constant(Ellipsis))]
            lines.append(ast.unparse(stub) + "  # your code here")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            # Imports are scaffolding, not the answer; the student's code may need them.
            lines.append(ast.get_source_segment(source, node))
    return "\n".join(lines) + "\n"


def student_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` with solution cells blanked and every output cleared."""
    nb = nbformat.from_dict(nb)  # deep copy: the caller's notebook is left as it was
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
        if "solution" in cell.metadata.get("tags", []):
            cell.source = blank_solution(cell.source)
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("build/student"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        student = student_copy(nb)
        blanked = sum("solution" in c.metadata.get("tags", []) for c in student.cells)
        nbformat.write(student, args.out / path.name)
        print(f"{path} -> {args.out / path.name} ({blanked} solution cells emptied)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
