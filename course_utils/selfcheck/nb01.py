"""Expected answers of notebook 01's self-test (upsampling), computed by the course's functions."""
from __future__ import annotations

import numpy as np

from .. import upsampling as up
from . import question


@question("01.Q1", "kernel taps", hint="the 1-D kernel has 2f-1 taps; the 2-D kernel is their outer product")
def kernel_taps():
    return up.bilinear_kernel(3).size


@question("01.Q2", "original samples", hint="one per input pixel")
def original_samples():
    return int((up.zero_insert(np.ones((5, 5)), 3) == 1).sum())


@question("01.Q3", "border value", hint="the last pixel is 2 positions past the last sample")
def border_value():
    return float(up.upsample_zero_insert(np.ones((5, 5)), 3)[0, -1])
