"""Expected answers of notebook 02's self-test (max unpooling), computed by the course's functions."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import pooling as pl
from . import question

# The lecture's 4x4 input (slide "Max Pooling").
LECTURE_INPUT = np.array([[1, 2, 6, 3],
                          [3, 5, 2, 1],
                          [1, 2, 2, 1],
                          [7, 3, 4, 8]], dtype=float)


# Q1's input: not the notebook's tie example. Its right window holds a tie whose first
# maximum in row-major order, (0, 3), is not the leftmost one, (1, 2); its left window
# asks for the flat index r * W + c off the first row.
Q1_INPUT = np.array([[1, 2, 5, 8],
                     [3, 6, 8, 0]], dtype=float)


@question("02.Q1", "switches with a tie",
          hint="flat index r * W + c into the 2x4 input; on a tie the first maximum in row-major order "
               "(top row first, then left to right) wins")
def tie_switches():
    _, switches = pl.max_pool2d_with_indices(Q1_INPUT, 2)
    return tuple(int(i) for i in switches.ravel())


@question("02.Q2", "pooled shape", hint="only whole windows count: floor((7 - 2) / 2) + 1")
def pooled_shape():
    return tuple(F.max_pool2d(torch.zeros(1, 1, 7, 9), 2).shape[-2:])


@question("02.Q3", "zeros after unpooling", hint="one value per window survives")
def zeros_after_unpooling():
    pooled, switches = pl.max_pool2d_with_indices(LECTURE_INPUT, 2)
    return int((pl.max_unpool2d(pooled, switches, LECTURE_INPUT.shape) == 0).sum())


@question("02.Q4", "inverse?", hint="count the values pooling threw away")
def unpooling_inverts():
    pooled, switches = pl.max_pool2d_with_indices(LECTURE_INPUT, 2)
    return bool(np.array_equal(pl.max_unpool2d(pooled, switches, LECTURE_INPUT.shape), LECTURE_INPUT))
