"""A model made ready to train: device, SyncBatchNorm, memory layout, the
``DistributedDataParallel`` wrapper and ``torch.compile``, in the one order that works."""
from __future__ import annotations

import torch
from torch import nn

from .distributed import is_ddp

__all__ = ["prepare_model", "compile_model", "is_compiled", "use_channels_last"]


def use_channels_last(setting: bool | None, device) -> bool:
    """``TrainConfig.channels_last`` resolved for ``device``: ``None`` means CPU and CUDA yes, MPS no."""
    if setting is not None:
        return bool(setting)
    return torch.device(device).type in ("cpu", "cuda")


def prepare_model(model: nn.Module, device, *, channels_last: bool | None = None, compile: bool = False,
                  ddp: bool = False, sync_bn: bool = False) -> nn.Module:
    """``model`` on ``device`` in the order DDP needs: SyncBatchNorm, channels_last, the
    ``DistributedDataParallel`` wrapper, then ``torch.compile`` around it.

    The layout comes before wrapping, because DDP sizes its gradient buckets with the
    parameters' strides at wrapping time ("grad strides do not match bucket view
    strides" otherwise); compiling the wrapper, not the module inside it, lets DDP
    overlap gradient communication with the backward pass (PyTorch's DDP and
    torch.compile notes, "TorchDynamo DDPOptimizer")."""
    device = torch.device(device)
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if use_channels_last(channels_last, device):
        model = model.to(memory_format=torch.channels_last)
    if ddp:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        model = compile_model(model)
    return model


def compile_model(model: nn.Module) -> nn.Module:
    try:
        return torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any failure means the same to the user
        raise RuntimeError(f"torch.compile could not compile {type(model).__name__} ({type(err).__name__}: "
                           f"{err}); train without compile=True / --compile") from err


def is_compiled(model) -> bool:
    """Whether ``model``, or a module it wraps, is a ``torch.compile``-d module."""
    while True:
        if hasattr(model, "_orig_mod"):
            return True
        if not is_ddp(model):
            return False
        model = model.module
