#!/usr/bin/env python3
"""`make bench`: run every benchmarks/bench_*.py module's ``main()`` in one process.

Figures are ratios measured in the same run (against PyTorch ops, against this machine's
own matmul throughput) or latencies compared with stated targets; nothing here is a test.
usage: python benchmarks/run.py [NAME ...]   (NAME: e.g. widgets, upsampling)
"""
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv) -> int:
    wanted = set(argv)
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        module.main()
        print(f"({name}: {time.perf_counter() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
