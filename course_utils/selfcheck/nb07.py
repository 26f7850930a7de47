"""Expected answers of notebook 07's self-test (07_pspnet_deeplab), computed by the course's
modules and PyTorch operations."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import question


@question("07.Q1", "ASPP rates at output stride 4", hint="the reach r * output_stride stays the same")
def q1() -> tuple:
    # Output stride 4: a case notebook 07 does not print, so the rule has to be applied.
    from ..models import aspp_rates
    return tuple(aspp_rates(4))


@question("07.Q2", "pyramid pooling output channels",
          hint="the features are concatenated with one branch per bin")
def q2() -> int:
    from ..models.pspnet import PyramidPooling
    ppm = PyramidPooling(128, bins=(1, 2, 3, 6), branch_channels=32).eval()
    with torch.no_grad():
        return int(ppm(torch.zeros(1, 128, 12, 12)).shape[1])


@question("07.Q3", "valid taps at rate 6 on a 5x5 map, centre pixel",
          hint="the centre pixel sits at index 2; its neighbours are 6 away")
def q3() -> int:
    # A 3x3 all-ones dilated convolution of an all-ones map counts the taps inside the map.
    counts = F.conv2d(torch.ones(1, 1, 5, 5), torch.ones(1, 1, 3, 3), padding=6, dilation=6)
    return int(counts[0, 0, 2, 2])


@question("07.Q4", "GroupNorm output depends on batch mates", hint="GroupNorm's statistics are per image")
def q4() -> bool:
    torch.manual_seed(0)
    gn = nn.GroupNorm(4, 16).train()
    x = torch.randn(3, 16, 6, 6)
    with torch.no_grad():
        with_a, with_b = gn(x[[0, 1]])[0], gn(x[[0, 2]])[0]
    return not torch.allclose(with_a, with_b, atol=1e-6)
