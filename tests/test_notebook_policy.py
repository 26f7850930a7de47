"""The nbval policy (docs/contributors.md), enforced on every committed notebook."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_kernelspec_and_execution_order(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    counts = [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1)), "run top to bottom in a fresh kernel (make refs)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_stored_errors_and_seeded(path):
    cells = _cells(path)
    for i, cell in enumerate(cells):
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"cell {i} stores an error"
    first_code = next(c for c in cells if c["cell_type"] == "code")
    assert "setup(" in "".join(first_code["source"]), "the first code cell seeds via course_utils.notebook.setup"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_widget_cells_are_ignored_and_followed_by_a_checked_cell(path):
    cells = [c for c in _cells(path) if c["cell_type"] == "code"]
    for i, cell in enumerate(cells):
        shows_widget = any(WIDGET_MIME in out.get("data", {}) for out in cell.get("outputs", []))
        if not (shows_widget or "nbval-ignore-output" in _tags(cell)):
            continue
        if shows_widget:
            assert "nbval-ignore-output" in _tags(cell), f"code cell {i} shows a widget: tag it nbval-ignore-output"
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        assert nxt is not None and "nbval-ignore-output" not in _tags(nxt) and nxt.get("outputs"), (
            f"code cell {i} is nbval-ignore-output: the next code cell must state, in a checked output, what matters")
        assert "nbval-skip" not in _tags(nxt)


def test_strict_comparison_everywhere():
    makefile = (ROOT / "Makefile").read_text()
    assert "--nbval " in makefile and "--nbval-lax" not in makefile
    for path in NOTEBOOKS:
        for cell in _cells(path):
            assert "nbval-skip" not in _tags(cell), f"{path.name}: nbval-skip hides a cell from CI"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_trailing_semicolon_suppression(path):
    """nbval executes cells without storing history, so IPython's "a trailing ; hides the
    result" looks at the wrong input and the result IS shown under nbval but not in
    `make refs`: the outputs then differ. End figure cells with plt.show() instead."""
    for i, cell in enumerate(c for c in _cells(path) if c["cell_type"] == "code"):
        lines = [l for l in "".join(cell["source"]).rstrip().splitlines() if l.strip()]
        assert not (lines and lines[-1].rstrip().endswith(";")), (
            f"code cell {i} ends with ';': use plt.show() (see this test's docstring)")


# A run time or a rate printed by a compared cell fails nbval on the next, faster or slower,
# machine (it did: "12 steps, 43 images/s" vs 45 on CI).
TIMING = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?\s*(?:ms|s|seconds?|min)\b(?! *[=<>])"
                    r"|\d\s*(?:images|scenes|steps|it)/s\b")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_compared_outputs_hold_no_timings(path):
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "code" or "nbval-ignore-output" in _tags(cell):
            continue
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            hit = TIMING.search(text)
            assert hit is None, (f"cell {i} prints a timing ({text[max(0, hit.start() - 30):hit.end() + 10]!r}) "
                                 "in a compared output: tag it nbval-ignore-output and check a statement instead")


CORE_LINE = re.compile(r"^\*\*Core path:\*\* sections marked ● are the lecture's core \(about (\d+) min\); "
                       r"sections marked ○ are optional deep dives\.$", re.M)


CORE_MINUTES = 75        # of the lecture's 90: the rest is for questions and moving between notebooks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_core_path_marked(path):
    """The lecture's core path: a line under the title, ● / ○ on every `## ` heading."""
    cells = [c for c in _cells(path) if c["cell_type"] == "markdown"]
    title = "".join(cells[0]["source"])
    assert title.startswith("# ") and CORE_LINE.search(title), f"{path.name}: no core-path line under the title"
    headings = [line for c in cells for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    assert headings, f"{path.name}: no sections"
    unmarked = [h for h in headings if not h.startswith(("## ● ", "## ○ "))]
    assert not unmarked, f"{path.name}: sections without ● (core) or ○ (deep dive): {unmarked}"
    assert any(h.startswith("## ● ") for h in headings), f"{path.name}: no core section"


def _core_path_table():
    """docs/instructors.md's core path table: {notebook number: (core sections, minutes)}."""
    doc = (ROOT / "docs" / "instructors.md").read_text()
    heading = re.search(rf"^#+ The {CORE_MINUTES}-minute core path\n", doc, re.M)
    assert heading, f"docs/instructors.md has no heading 'The {CORE_MINUTES}-minute core path'"
    end = re.search(r"^#", doc[heading.end():], re.M)
    section = doc[heading.end():heading.end() + end.start()] if end else doc[heading.end():]
    rows = re.findall(r"^\| \[?(\d\d)_\w+[^|]*\| (.*) \|\s*(\d+)\s*\|$", section, re.M)
    return {n: (sections, int(minutes)) for n, sections, minutes in rows}, len(rows)


def test_instructors_core_path_table_covers_every_notebook_within_the_core_minutes():
    """The core path table: every notebook once, 75 minutes at most in all."""
    table, n_rows = _core_path_table()
    assert n_rows == len(table), "a notebook has two rows in the core path table"
    assert sorted(table) == sorted(p.name[:2] for p in NOTEBOOKS)
    total = sum(minutes for _, minutes in table.values())
    assert total <= CORE_MINUTES, f"the core path takes {total} min, more than {CORE_MINUTES}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_core_path_table_agrees_with_the_notebook(path):
    """Each row states the notebook's own minutes (its first line) and its own numbered ●
    sections, so moving a section to ○ or changing a share shows in both places."""
    table, _ = _core_path_table()
    sections, minutes = table[path.name[:2]]
    cells = _cells(path)
    match = CORE_LINE.search("".join(cells[0]["source"]))
    assert match, f"{path.name}: no core-path line under the title"
    assert int(match.group(1)) == minutes, \
        f"{path.name}: its first line says {match.group(1)} min, docs/instructors.md {minutes}"
    marked = {int(n) for c in cells if c["cell_type"] == "markdown"
              for n in re.findall(r"^## ● (\d+)\.", "".join(c["source"]), re.M)}
    listed = {int(n) for n in re.findall(r"(?:^|; )(\d+) ", sections)}
    assert marked == listed, (f"{path.name}: ● sections {sorted(marked)} in the notebook, "
                              f"{sorted(listed)} in docs/instructors.md")
