"""The optimizer of a training run: AdamW or SGD, fused where PyTorch has the kernels."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["build_optimizer"]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over the trainable parameters; no weight decay on biases and norm weights
    (decaying a norm's scale only fights the normalisation)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    # One fused kernel per step instead of a dozen small operations per parameter tensor
    # (off CUDA, PyTorch otherwise loops over the tensors); the same update formula,
    # rounded in another order.
    if _fused_supported(decay + no_decay):
        try:
            return _make(config, groups, fused=True)
        except (RuntimeError, TypeError, ValueError) as err:
            # Older PyTorch releases have fused kernels on CUDA only.
            warnings.warn(f"fused {config.optimizer} is not available here ({err}); using the plain one")
    return _make(config, groups, fused=None)


def _make(config: TrainConfig, groups, fused):
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.learning_rate, fused=fused)
    return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum, fused=fused)


def _fused_supported(params) -> bool:
    """Fused optimizer kernels exist for floating-point parameters on CPU, CUDA and MPS."""
    devices = {p.device.type for p in params}
    return devices <= {"cpu", "cuda", "mps"} and len(devices) == 1 and all(p.is_floating_point() for p in params)
