"""A model made ready to train: device, SyncBatchNorm, memory layout, ``torch.compile`` and
the ``DistributedDataParallel`` wrapper, in the one order that works; and the callbacks
that come with the library."""
from __future__ import annotations

import torch
from torch import nn

from .config import use_channels_last

__all__ = ["prepare_model", "compile_model", "is_compiled", "StopAt", "EVENTS"]

EVENTS = ("step", "validation", "epoch", "end")


def prepare_model(model: nn.Module, device, *, channels_last: bool | None = None, compile: bool = False,
                  ddp: bool = False, sync_bn: bool = False) -> nn.Module:
    """``model`` on ``device``, in the order DDP needs: SyncBatchNorm, channels_last, then
    ``torch.compile``, then the ``DistributedDataParallel`` wrapper. (Converting the layout
    after wrapping leaves DDP's gradient buckets with the old strides: "grad strides do not
    match bucket view strides".)"""
    device = torch.device(device)
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if use_channels_last(channels_last, device):
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = compile_model(model)
    if ddp:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


def compile_model(model: nn.Module) -> nn.Module:
    try:
        return torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any failure means the same to the user
        raise RuntimeError(f"torch.compile could not compile {type(model).__name__} ({type(err).__name__}: "
                           f"{err}); train without compile=True / --compile") from err


def is_compiled(model) -> bool:
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return hasattr(model, "_orig_mod")


class StopAt:
    """A callback ending training after ``steps`` steps in total (counting resumed ones)."""

    def __init__(self, steps: int):
        self.steps = steps

    def __call__(self, trainer, event):
        if event == "step" and trainer.step >= self.steps:
            trainer.stop()
