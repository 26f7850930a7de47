#!/usr/bin/env python3
"""`make bench`: run every benchmarks/bench_*.py module's ``main()`` in one process, and
write what each prints to docs/benchmarks.md.

Figures are ratios measured in the same run (against PyTorch ops, against this machine's
own matmul throughput) or latencies compared with stated targets; nothing here is a test.
usage: python benchmarks/run.py [NAME ...]   (NAME: e.g. widgets, upsampling)

docs/benchmarks.md gets a header (the date, the machine, the torch version) and one section
per benchmark, between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` markers. A run
of some benchmarks rewrites only their sections and keeps the others as they were; each
section says when and on which machine it was measured. The file is written after every
benchmark, so a run that stops half-way keeps what it measured.
"""
from __future__ import annotations

import contextlib
import datetime
import importlib.util
import io
import os
import platform
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks.md"
# CPU features that decide what PyTorch can use here: AVX2 / AVX-512 kernels, native bf16
# (course_utils.precision uses bf16 on a CPU only where it is native), AMX tiles.
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
SECTION = re.compile(r"<!-- bench:(\w+) -->\n.*?<!-- /bench:\1 -->\n?", re.S)

HEADER = """# Benchmark results

This file is written by `make bench` (`benchmarks/run.py`); do not edit it by hand. A full
run rewrites every section; `python benchmarks/run.py NAME ...` rewrites only the sections
it runs and keeps the others, so each section says when and where it was measured. The
figures are what the benchmark modules print: ratios measured in the same run, or
latencies against the targets they state. Timings on a machine shared with other work are
pessimistic.

Last written {date} on {machine}.

Sections: {contents}.
"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> list[str] | None:
    """The FLAGS this CPU has, or None where /proc/cpuinfo does not say (not Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in FLAGS if f in have]
    except OSError:
        pass
    return None


def torch_version() -> str:
    try:
        import torch
    except ImportError:
        return "not installed"
    return torch.__version__


def machine() -> str:
    """One line: the CPU, its cores and relevant flags, the platform and the torch version."""
    flags = cpu_flags()
    flags = "CPU flags not known" if flags is None else ", ".join(flags) if flags else "none of " + "/".join(FLAGS)
    return (f"{cpu_model()} ({os.cpu_count()} cores; {flags}), {platform.platform()}, "
            f"Python {platform.python_version()}, torch {torch_version()}")


class Tee(io.TextIOBase):
    """Writes go to ``stream`` (still printed) and are kept for the document."""

    def __init__(self, stream):
        self.stream, self.kept = stream, io.StringIO()

    def write(self, text):
        self.kept.write(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


def read_sections(path: Path = DOC) -> dict[str, str]:
    """NAME -> its section, markers included, from an existing document."""
    if not path.exists():
        return {}
    return {m.group(1): m.group(0).rstrip("\n") + "\n" for m in SECTION.finditer(path.read_text())}


def section(name: str, description: str, output: str, seconds: float, when: str, where: str) -> str:
    body = output.rstrip("\n").replace("```", "'''")
    return (f"<!-- bench:{name} -->\n## {name}\n\n{description}\n\n"
            f"Measured {when} on {where}; the benchmark took {seconds:.0f} s.\n\n"
            f"```text\n{body}\n```\n<!-- /bench:{name} -->\n")


def placeholder(name: str) -> str:
    return (f"<!-- bench:{name} -->\n## {name}\n\nNot measured yet: "
            f"`python benchmarks/run.py {name}`.\n<!-- /bench:{name} -->\n")


def write_doc(names: list[str], sections: dict[str, str], when: str, where: str, path: Path = DOC) -> None:
    """The header, then every benchmark's section in ``names`` order; sections of benchmarks
    that no longer exist are dropped."""
    contents = ", ".join(f"[{n}](#{n})" for n in names)
    parts = [HEADER.format(date=when, machine=where, contents=contents)]
    parts += [sections.get(n) or placeholder(n) for n in names]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(parts))
    os.replace(tmp, path)


def main(argv) -> int:
    wanted = set(argv)
    modules = {path.stem.removeprefix("bench_"): path for path in sorted(HERE.glob("bench_*.py"))}
    unknown = wanted - set(modules)
    if unknown:
        print(f"no such benchmark: {', '.join(sorted(unknown))} (have: {', '.join(modules)})", file=sys.stderr)
        return 2
    sections = read_sections()
    where = machine()
    for name, path in modules.items():
        if wanted and name not in wanted:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"\n== {name} ==", flush=True)
        tee = Tee(sys.stdout)
        start = time.perf_counter()
        with contextlib.redirect_stdout(tee):
            module.main()
        seconds = time.perf_counter() - start
        print(f"({name}: {seconds:.1f} s)", flush=True)
        when = datetime.date.today().isoformat()
        description = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
        sections[name] = section(name, description, tee.kept.getvalue(), seconds, when, where)
        write_doc(list(modules), sections, when, where)
    print(f"\nwritten: {DOC.relative_to(HERE.parent)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
