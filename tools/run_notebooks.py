#!/usr/bin/env python3
"""Execute notebooks in a fresh kernel each, as nbval and the HTML course do.

usage: python tools/run_notebooks.py [--inplace] NOTEBOOK...

With --inplace the executed notebook replaces the stored one, so its outputs become
nbval's new reference (``make refs``). Without it the notebooks are only run and timed.
The environment (PYTHONHASHSEED, TQDM_DISABLE, MPLBACKEND) comes from the Makefile.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def execute(path: Path, timeout: int = 900) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--inplace", action="store_true", help="store the outputs as the new reference")
    args = parser.parse_args(argv)
    total = 0.0
    for path in args.notebooks:
        nb, seconds = execute(path)
        total += seconds
        if args.inplace:
            # Outputs only: the language_info version would churn with every Python patch.
            nb.metadata.pop("language_info", None)
            nbformat.write(nb, path)
        print(f"{path}: {seconds:.1f} s", flush=True)
    print(f"all {len(args.notebooks)} notebooks: {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
