"""pyproject.toml and environment.yml must list the same dependencies (extras included)."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's.
CONDA_NAMES = {"torch": "pytorch"}


def _parse(requirement: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", requirement)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # Conda has no extras: environment.yml is the full environment, every extra included.
    pip_deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    expected = {CONDA_NAMES.get(n, n): spec for n, spec in map(_parse, pip_deps)}

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_parse(d) for d in env["dependencies"] if isinstance(d, str))
    python_spec = conda.pop("python")
    conda.pop("pip")
    assert conda == expected
    assert python_spec == project["requires-python"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(line.endswith("-e .") for line in pip_section), "the course itself is installed editable"


def test_extras_cover_what_the_make_targets_import():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {n: {_parse(d)[0] for d in deps} for n, deps in extras.items()}
    makefile = (ROOT / "Makefile").read_text()
    assert "voila" in names["deck"] and "pip install -e '.[deck]'" in makefile, "make demos installs Voilà"
    # make course (tools/build_course.py) runs on the test extra and copies its MathJax.
    assert "jupyter-server-mathjax" in names["test"] and "voila" in names["test"]
