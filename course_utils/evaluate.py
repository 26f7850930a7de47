"""``python -m course_utils.evaluate``: the command-line evaluator, which lives in
:mod:`course_utils.cli.evaluate` (this name is kept so the documented command works).
The evaluation itself is :func:`course_utils.training.evaluate`."""
import sys

from .cli.evaluate import PROG, build_parser, main

__all__ = ["main", "build_parser", "PROG"]

if __name__ == "__main__":
    sys.exit(main())
