"""Where the course's committed assets live.

``data/`` sits beside the package in the repository, and the course is installed in
editable mode (``make lab``), so the package finds it relative to itself. A copy of the
course installed elsewhere points ``COURSE_DATA_DIR`` at a ``data/`` folder instead.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR"]

DATA_DIR = Path(os.environ.get("COURSE_DATA_DIR") or Path(__file__).resolve().parents[1] / "data")
