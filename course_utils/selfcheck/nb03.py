"""Expected answers of notebook 03's self-test (transposed convolution), computed by the course's functions."""
from __future__ import annotations

import numpy as np

from .. import conv_matrix as cm
from . import question


# Q1's layer and input: a case the notebook does not print, where neither "kernel 4
# doubles" (section 4) nor "stride 3 triples" gives the size; only the formula does.
Q1_LAYER = dict(kernel_size=4, stride=3, padding=1)
Q1_INPUT_SIZE = 10


@question("03.Q1", "output size", hint="(n-1)s - 2p + d(k-1) + 1")
def output_size():
    return cm.conv_transpose_output_size(Q1_INPUT_SIZE, **Q1_LAYER)


@question("03.Q2", "output_padding", hint="what did the floor in the conv formula drop?")
def output_padding():
    return cm.matching_output_padding(8, 3, 2, 1)


@question("03.Q3", "shape of C", hint="one row per output pixel, one column per input pixel")
def shape_of_c():
    return cm.conv2d_matrix(np.ones((3, 3)), (5, 5)).shape


@question("03.Q4", "C^T inverts C", hint="section 6: one counterexample is enough")
def transpose_inverts():
    # The notebook's 3x3 kernel with taps 1..9 on a 4x4 input is one counterexample.
    C = cm.conv2d_matrix(np.arange(1.0, 10.0).reshape(3, 3), (4, 4))
    return bool(np.allclose(C.T @ C, np.eye(16)))
