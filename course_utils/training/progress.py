"""Progress bars that stay silent under ``TQDM_DISABLE`` and off the main process."""
from __future__ import annotations

import os

__all__ = ["progress_bar", "NoBar"]


class NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, *a, **k):
        pass

    def close(self):
        pass


def progress_bar(enabled: bool, total, initial: int, desc: str = "train", unit: str = "step"):
    # TQDM_DISABLE is read here too: tqdm.auto in a kernel builds its widget (and sends
    # comm messages on every update) even when the environment disables the bar, which
    # floods a long training cell's output under nbval.
    if not enabled or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false"):
        return NoBar()
    from tqdm.auto import tqdm

    # mininterval: a few redraws per second are plenty for a student to watch.
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=True, mininterval=0.5)
