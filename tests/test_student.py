"""`make student` writes copies with the solutions emptied, and those copies run.

The copies are written by tools/make_student.py into a temporary folder (not next to the
course, so a notebook that found its files through a relative path would fail here as it
would in a student's download). Each copy that has an exercise is executed in a fresh
kernel (nbclient) up to and including the check of its first exercise: no error, and the
blanked answer is reported "not yet" (so the placeholder is not accidentally right).

Cost: the cells before the first exercise are the course's own, unchanged (checked
below) and already run by nbval. Copies whose stored run time up to the first exercise
exceeds COURSE_STUDENT_BUDGET seconds (default 90: the training notebooks) are checked
structurally only; set COURSE_STUDENT_BUDGET=inf to run them too.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
BUDGET = float(os.environ.get("COURSE_STUDENT_BUDGET", "90"))

sys.path.insert(0, str(ROOT / "tools"))
from make_student import PLACEHOLDER, main as make_student  # noqa: E402
from helpers import stored_seconds  # noqa: E402


def _is_solution(cell) -> bool:
    return cell.cell_type == "code" and "solution" in cell.metadata.get("tags", [])


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert make_student(["--out", str(out), *map(str, NOTEBOOKS)]) == 0
    return out


def test_make_student_target_runs_the_tool():
    dry = subprocess.run(["make", "-n", "--no-print-directory", "student"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "tools/make_student.py --out build/student" in dry


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_solutions_emptied_and_outputs_cleared(student_dir, path):
    original = nbformat.read(path, as_version=4)
    copy = nbformat.read(student_dir / path.name, as_version=4)
    assert len(copy.cells) == len(original.cells)
    assert "widgets" not in copy.metadata
    for i, (a, b) in enumerate(zip(original.cells, copy.cells)):
        assert a.cell_type == b.cell_type
        if b.cell_type != "code":
            assert a.source == b.source
            continue
        assert b.outputs == [] and b.execution_count is None, f"cell {i}: outputs not cleared"
        if not _is_solution(a):
            assert a.source == b.source, f"cell {i}: only solution cells may change"
            continue
        student = ast.parse(b.source)  # valid Python as handed out
        blanks = {ast.unparse(t) for n in student.body if isinstance(n, ast.Assign) for t in n.targets}
        for node in student.body:  # no value survives: every assignment is `name = ...`
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                assert isinstance(node.value, ast.Constant) and node.value.value is Ellipsis, (
                    f"cell {i}: {ast.unparse(node)!r} keeps a value")
        for node in ast.parse(a.source).body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    names = [ast.unparse(t) for t in getattr(target, "elts", [target])]
                    assert set(names) <= blanks, f"cell {i}: {names} must stay as blanks to fill in"
        assert PLACEHOLDER in b.source


def _first_exercise(nb):
    """Index of the check cell that follows the first solution cell, or None."""
    for i, cell in enumerate(nb.cells):
        if _is_solution(cell):
            return next(j for j in range(i + 1, len(nb.cells)) if nb.cells[j].cell_type == "code")
    return None


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_copy_runs_to_the_first_exercise(student_dir, path):
    copy = nbformat.read(student_dir / path.name, as_version=4)
    end = _first_exercise(copy)
    if end is None:
        pytest.skip(f"{path.name} has no exercise")
    cost = stored_seconds(nbformat.read(path, as_version=4).cells[:end + 1])
    if cost > BUDGET:
        pytest.skip(f"{path.name}: {cost:.0f} s of cells before its first exercise, over "
                    f"COURSE_STUDENT_BUDGET={BUDGET:g} (they are the course's own cells, run by nbval)")
    copy.cells = copy.cells[:end + 1]
    NotebookClient(copy, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(student_dir)}}).execute()
    verdicts = "".join(o.get("text", "") for o in copy.cells[end].outputs if o.output_type == "stream")
    assert "[not yet]" in verdicts and "[right]" not in verdicts, (
        f"{path.name}: the blanked answers must be reported 'not yet', got {verdicts!r}")
