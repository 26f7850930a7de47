#!/usr/bin/env python3
"""`make demos`: the demo deck, deck/demos.ipynb, served by Voilà for the lecture hall.

usage: python tools/deck.py [VOILA OPTION...]   e.g. --port=8867 --no-browser

Voilà runs the deck in a fresh kernel for each page load and shows the outputs only (the
code is stripped), so every demo is live: ipywidgets 8 with a kernel behind it. The page
uses the deck's template (deck/voila/templates/deck: Voilà's lab template with large text
and controls, and without its CDN stylesheets, so it works offline). The server listens on localhost only and requires a token (Voilà's default is none): it prints
the URL with ``?token=...`` and opens it. Extra options are passed to Voilà and win,
e.g. ``--Voila.token=SECRET`` for a token of your own.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from course_utils.threads import configure_openmp_waiting

ROOT = Path(__file__).resolve().parents[1]
DECK = ROOT / "deck" / "demos.ipynb"
# Voilà looks for templates in <jupyter path>/voila/templates/<name>.
TEMPLATES = ROOT / "deck"
FLAGS = [
    "--Voila.ip=127.0.0.1",
    "--token",  # Voilà generates one and prints the URL that carries it
    "--template=deck",
    "--theme=light",  # projectors wash out dark themes
    "--strip_sources=True",
    "--show_tracebacks=False",
]


def command(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "voila", str(DECK), *FLAGS, *extra]


def main(argv=None) -> int:
    # As in the Makefile: how the demos' OpenMP threads wait (course_utils.threads).
    configure_openmp_waiting()
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in (str(TEMPLATES), os.environ.get("JUPYTER_PATH", "")) if p)
    cmd = command(sys.argv[1:] if argv is None else list(argv))
    os.execv(cmd[0], cmd)
    return 1  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main())
