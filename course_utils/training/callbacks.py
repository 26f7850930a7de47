"""Callbacks that come with the library. A callback is any ``callback(trainer, event)``;
``fit`` calls it with event ``"step"``, ``"validation"``, ``"epoch"`` or ``"end"``."""
from __future__ import annotations

from .._checks import check_int

__all__ = ["StopAt"]


class StopAt:
    """End training after ``steps`` steps in total (counting resumed ones)."""

    def __init__(self, steps: int):
        self.steps = check_int("steps", steps, 1)

    def __call__(self, trainer, event):
        if event == "step" and trainer.step >= self.steps:
            trainer.stop()
