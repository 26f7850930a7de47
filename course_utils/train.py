"""``python -m course_utils.train``: the command-line trainer, which lives in
:mod:`course_utils.cli.train` (this name is kept so the documented command works)."""
import sys

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main())
