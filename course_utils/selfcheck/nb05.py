"""Expected answers of notebook 05's self-test (05_fcn), computed by the course's functions."""
from __future__ import annotations

import torch
from torch import nn

from . import question


def _fcn8s():
    from ..datasets import NUM_CLASSES
    from ..models import build_model
    torch.manual_seed(0)
    return build_model("fcn8s", NUM_CLASSES, width=16).eval()


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@question("05.Q1", "architecture changes with input size",
          hint="run the same model on another size: same weights, output = input size")
def q1() -> bool:
    model = _fcn8s()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        y = model(torch.rand(1, 3, 80, 144))
    unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return not (tuple(y.shape[-2:]) == (80, 144) and unchanged)


@question("05.Q2", "kernel size of the convolutionalised Linear(576, 10)",
          hint="the conv covers the whole h x w block the linear layer saw")
def q2() -> int:
    from ..models import convolutionalize
    return convolutionalize(nn.Linear(576, 10), (64, 3, 3)).kernel_size[0]


@question("05.Q3", "stride-8 score map of a 200x300 input", hint="ceil(H / 8) rows, ceil(W / 8) columns")
def q3() -> tuple:
    model = _fcn8s()
    with torch.no_grad():
        c3 = model.backbone(torch.zeros(1, 3, 200, 300))["c3"]
    return tuple(c3.shape[-2:])


@question("05.Q4", "trained fraction in the frozen-encoder phase", hint="decoder parameters / all parameters",
          atol=1e-9)
def q4() -> float:
    model = _fcn8s().freeze_encoder()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return round(trainable / _n_params(model), 2)
