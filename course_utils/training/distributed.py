"""What the library needs from ``torch.distributed``: is it on, which rank, which device
carries the collectives, how to sum a tensor across processes, and how to give every
process rank 0's buffers. Joining a process group is the command line's business
(:mod:`course_utils.cli.distributed`)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["dist_initialized", "rank", "world_size", "is_main_process", "collective_device", "all_reduce_sum",
           "broadcast_buffers", "is_ddp", "unwrap_model", "unwrap_ddp"]

_WRAPPERS = (nn.parallel.DistributedDataParallel, nn.DataParallel)


def dist_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if dist_initialized() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if dist_initialized() else 1


def is_main_process() -> bool:
    return rank() == 0


def collective_device() -> torch.device:
    """NCCL reduces CUDA tensors only, on the current CUDA device (the one ``init_distributed``
    selected from ``LOCAL_RANK``); gloo reduces CPU tensors."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values):
    """``values`` (a tensor or array) summed over all processes, as a CPU tensor; unchanged
    when not distributed. Every process must call it, with or without data of its own."""
    tensor = torch.as_tensor(values)
    if not dist_initialized():
        return tensor.cpu()
    on_device = tensor.to(collective_device())
    torch.distributed.all_reduce(on_device, op=torch.distributed.ReduceOp.SUM)
    return on_device.cpu()


@torch.no_grad()
def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Overwrite every process's buffers of ``module`` (BatchNorm's running statistics) with
    rank ``src``'s; nothing happens when not distributed. Every process must call it.

    DDP broadcasts rank 0's buffers only at the start of a forward pass of the wrapped
    model, and each rank's forward then updates them from its own share of the batch.
    Evaluating the unwrapped module would therefore use each rank's own statistics, and
    the summed mIoU would describe no single model (not the one rank 0 saves).
    """
    if not dist_initialized():
        return
    src = int(src)
    if not 0 <= src < world_size():
        raise ValueError(f"src must be a rank in [0, {world_size() - 1}], got {src}")
    buffers = list(unwrap_model(module).buffers())
    device = collective_device()
    # One broadcast per dtype (float statistics, integer batch counts), not one per buffer.
    for dtype in dict.fromkeys(b.dtype for b in buffers):
        group = [b for b in buffers if b.dtype == dtype]
        flat = torch.cat([b.detach().reshape(-1).to(device) for b in group])
        torch.distributed.broadcast(flat, src)
        for b, values in zip(group, flat.split([b.numel() for b in group])):
            b.copy_(values.view(b.shape))


def is_ddp(model) -> bool:
    """Whether ``model`` holds a DistributedDataParallel / DataParallel wrapper (possibly compiled)."""
    while True:
        if isinstance(model, _WRAPPERS):
            return True
        if not hasattr(model, "_orig_mod"):
            return False
        model = model._orig_mod


def unwrap_ddp(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel``. A module compiled
    inside the wrapper stays compiled; a wrapper compiled around it is left out entirely."""
    if hasattr(model, "_orig_mod") and is_ddp(model._orig_mod):
        model = model._orig_mod
    while isinstance(model, _WRAPPERS):
        model = model.module
    return model


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose ``state_dict`` has plain keys: unwraps DDP/DataParallel and torch.compile."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, _WRAPPERS):
            model = model.module
        else:
            return model
