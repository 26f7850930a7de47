"""The documents a reader meets: README.md, CONTRIBUTING.md and docs/*.md.

Every relative Markdown link reaches a file of the repository, and an ``#anchor`` a heading
of the Markdown file it points to (GitHub's heading slugs); the README stays short; and no
document speaks of the team's history (issue numbers, sessions, "since the last round")
instead of the course. ``make bench`` writes docs/benchmarks.md: its partial runs keep the
other benchmarks' sections.
"""
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 100
# Words about how the course was made, which mean nothing to a student or an instructor.
HISTORY = re.compile(r"\bissue\s*#?\d|\bsession\s*#?\d|since the last|before issue|after issue", re.I)

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+[^>]*(?:name|id)=\"([^\"]+)\"", re.I)


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans (their brackets are not links).
    Fences are replaced by as many newlines, so line numbers stay right."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return INLINE_CODE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: Markdown marks and punctuation dropped, lower case,
    spaces to hyphens (letters, digits, ``-`` and ``_`` kept)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)       # a link counts as its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors a Markdown file offers: its headings' slugs (repeats get -1, -2, ...) and
    explicit HTML anchors."""
    text = FENCE.sub("", path.read_text())
    found, seen = set(), {}
    for _, title in HEADING.findall(text):
        slug = github_slug(title)
        n = seen.get(slug, 0)
        found.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return found | set(HTML_ANCHOR.findall(text))


def links(path: Path):
    """(line number, target) of every inline and reference-style link and image in ``path``."""
    text = _prose(path.read_text())
    for pattern in (INLINE_LINK, REFERENCE_LINK):
        for m in pattern.finditer(text):
            yield text.count("\n", 0, m.start()) + 1, m.group(1)


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of ``path``, one sentence per broken link."""
    problems, root = [], root.resolve()
    for line, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue                                      # http:, https:, mailto:: not checked here
        where = f"{path.relative_to(root)}:{line}: {target}"
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if root not in (dest, *dest.parents):
            problems.append(f"{where}: outside the repository")
        elif not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor:
            if dest.suffix != ".md":
                problems.append(f"{where}: anchors are checked in Markdown files only")
            elif anchor not in anchors(dest):
                problems.append(f"{where}: no heading with this anchor in {dest.relative_to(root)}")
    return problems


def test_the_documents_exist():
    for name in ("README.md", "CONTRIBUTING.md", "docs/instructors.md", "docs/contributors.md",
                 "docs/benchmarks.md"):
        assert (ROOT / name).is_file(), name


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert not broken_links(path), "\n".join(broken_links(path))


def test_the_link_check_finds_broken_links(tmp_path):
    """The checker itself, on a small repository of its own: a missing file and a missing
    heading are found; good links, code and web addresses are not reported."""
    tmp_path = tmp_path.resolve()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## The `make` targets\n")
    doc = tmp_path / "README.md"
    doc.write_text("[good](docs/a.md#the-make-targets) [gone](docs/missing.md)\n"
                   "[bad anchor](docs/a.md#nowhere) `[code](not/a/link.md)`\n"
                   "[web](https://example.org/x) [self](#title-here)\n\n# Title here\n")
    problems = broken_links(doc, tmp_path)
    assert len(problems) == 2, problems
    assert "docs/missing.md: no such file" in problems[0]
    assert "docs/a.md#nowhere: no heading" in problems[1]


def test_github_slugs():
    assert github_slug("The 90-minute core path") == "the-90-minute-core-path"
    assert github_slug("The command line and `torchrun`") == "the-command-line-and-torchrun"
    assert github_slug("Handouts: the HTML course and student copies") == "handouts-the-html-course-and-student-copies"
    assert github_slug("time_to_accuracy") == "time_to_accuracy"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, (f"README.md has {lines} lines (at most {README_MAX_LINES}): "
                                       "move details to docs/ and link them")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_team_history_in_documents(path):
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for n, line in enumerate(path.read_text().splitlines(), 1) if HISTORY.search(line)]
    assert not found, "words about the team's history, not the course:\n" + "\n".join(found)


def _bench_runner():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_partial_benchmark_run_keeps_the_other_sections(tmp_path):
    run = _bench_runner()
    doc = tmp_path / "benchmarks.md"
    first = {"a": run.section("a", "A.", "a 1\n", 1.0, "2001-01-01", "machine one"),
             "b": run.section("b", "B.", "b 1\n", 2.0, "2001-01-01", "machine one")}
    run.write_doc(["a", "b", "c"], first, "2001-01-01", "machine one", doc)
    sections = run.read_sections(doc)
    assert {k: sections[k] for k in first} == first and list(sections) == ["a", "b", "c"]
    sections["b"] = run.section("b", "B.", "b 2\n", 3.0, "2002-02-02", "machine two")
    run.write_doc(["a", "b", "c"], sections, "2002-02-02", "machine two", doc)
    text = doc.read_text()
    assert "a 1" in text and "b 2" in text and "b 1" not in text
    assert "Last written 2002-02-02 on machine two" in text
    assert "Not measured yet: `python benchmarks/run.py c`" in text
    assert run.read_sections(doc)["a"] == first["a"]


def test_benchmark_sections_name_existing_benchmarks():
    """docs/benchmarks.md's sections are benchmarks/bench_*.py modules (a new module gets its
    section at its first run), in run.py's order."""
    names = [p.stem.removeprefix("bench_") for p in sorted((ROOT / "benchmarks").glob("bench_*.py"))]
    sections = list(_bench_runner().read_sections(ROOT / "docs" / "benchmarks.md"))
    assert sections and sections == [n for n in names if n in sections]
