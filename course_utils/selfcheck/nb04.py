"""Expected answers of notebook 04's self-test (dilated convolution), computed by the course's functions."""
from __future__ import annotations

import numpy as np

from .. import receptive_field as rfm
from . import question


@question("04.Q1", "receptive field", hint="each layer adds d(k-1) times the jump")
def field_size():
    return rfm.receptive_field([(3, 1, d) for d in (1, 2, 4)]).size


@question("04.Q2", "padding", hint="d(k-1)/2")
def same_padding():
    return rfm.same_padding(3, 6)


@question("04.Q3", "jump", hint="the product of the strides")
def jump():
    return rfm.receptive_field([(7, 2, 1), (3, 2, 1)]).stride


@question("04.Q4", "no holes", hint="all three dilations are even")
def no_holes():
    return bool(np.all(rfm.path_counts([(3, 1, d) for d in (2, 4, 8)]) > 0))
