"""Joining and leaving a ``torchrun`` process group.

Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``MASTER_ADDR``/``MASTER_PORT``) :func:`init_distributed` joins the process group: NCCL
with the GPU ``cuda:LOCAL_RANK`` made current (NCCL's collectives run on the current
device), or gloo on the CPU when there is no CUDA or ``COURSE_DEVICE=cpu`` asks for the
CPU. Without those variables it does nothing, so one code path serves one process and many.
"""
from __future__ import annotations

import os

import torch

__all__ = ["init_distributed", "shutdown_distributed"]


def init_distributed() -> tuple[int, int, torch.device]:
    """Join the ``torchrun`` process group if there is one: ``(rank, world_size, device)``."""
    import torch.distributed as dist

    from ..device import select_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return 0, 1, select_device()
    wanted = os.environ.get("COURSE_DEVICE")
    if wanted not in (None, "", "cpu", "cuda"):
        raise ValueError(f"COURSE_DEVICE must be 'cpu' or 'cuda' under torchrun, got {wanted!r}")
    cuda = torch.cuda.is_available() and wanted != "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ValueError("COURSE_DEVICE=cuda but torch.cuda.is_available() is False")
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s): "
                             "start at most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        # init_method "env://" reads MASTER_ADDR/PORT, RANK and WORLD_SIZE, which torchrun
        # sets for single- and multi-node launches alike.
        dist.init_process_group("nccl" if cuda else "gloo", init_method="env://",
                                **({"device_id": device} if cuda else {}))
    return dist.get_rank(), dist.get_world_size(), device


def shutdown_distributed(wait_for_all: bool = False) -> None:
    """Leave the process group; ``wait_for_all`` after a run every rank completed.

    Rank 0 still writes files after the last collective; tearing gloo down on one rank
    while the other is busy aborted the process ("terminate called without an active
    exception") about one run in three. A barrier on success prevents it; after an error
    no barrier, since the other ranks may never arrive (torchrun then stops them).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()
