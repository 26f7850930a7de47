"""The first cell of every notebook: ``from course_utils.notebook import setup; setup()``."""
from __future__ import annotations

import random

import numpy as np


def setup(seed: int = 0) -> None:
    """Seed every generator the course uses and set the shared visual language.

    Seeding here (not ad hoc in cells) is what makes a notebook print the same numbers
    on every run, which nbval relies on.
    """
    from .threads import configure_openmp_waiting

    # Must precede torch's first import to take effect (see course_utils.threads).
    configure_openmp_waiting()
    import matplotlib as mpl
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    np.set_printoptions(precision=4, suppress=True, linewidth=110)
    torch.set_printoptions(precision=4, sci_mode=False, linewidth=110)
    # Modest dpi keeps committed notebooks small; the rest is the course's one look.
    mpl.rcParams.update({
        "figure.dpi": 80,
        "savefig.dpi": 80,
        "figure.figsize": (6.0, 3.5),
        "image.interpolation": "nearest",
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "font.size": 9,
    })
