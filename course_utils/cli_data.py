"""What the command-line tools share: data specs, the distributed set-up, error reporting.

A data spec names a data set in one word, so the same command works on a laptop and a
GPU box: ``synthcity`` (drawn on the fly, no download), ``voc:PATH`` (Pascal VOC 2012,
the ``VOC2012`` folder or the ``VOCdevkit`` above it) or ``cityscapes:PATH`` (the folder
holding ``leftImg8bit/`` and ``gtFine/``).

Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``MASTER_ADDR``/``MASTER_PORT``) :func:`init_distributed` joins the process group: NCCL
with one GPU per process on CUDA, gloo on CPU. Without those variables it does nothing,
so one code path serves one process and many.
"""
from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import torch

from ._checks import check_int

SCHEMES = ("synthcity", "voc", "cityscapes")
SPEC_HELP = "synthcity | voc:PATH | cityscapes:PATH"


class CLIError(Exception):
    """A mistake in the command line or its inputs: reported as one line, no traceback."""


def parse_data_spec(spec: str) -> tuple[str, Path | None]:
    """``"voc:/data/VOC"`` -> ``("voc", Path("/data/VOC"))``; ``"synthcity"`` -> ``("synthcity", None)``."""
    scheme, sep, path = str(spec).partition(":")
    if scheme not in SCHEMES:
        raise ValueError(f"data must be {SPEC_HELP}; got {spec!r} (unknown scheme {scheme!r})")
    if scheme == "synthcity":
        if path:
            raise ValueError(f"data 'synthcity' takes no path (size it with --size/--n-train); got {spec!r}")
        return scheme, None
    if not path:
        raise ValueError(f"data {scheme!r} needs a folder: {scheme}:PATH")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"data folder {str(root)!r} for {scheme!r} does not exist")
    return scheme, root


def build_dataset(spec: str, split: str, *, train: bool, crop=None, size=64, n: int = 256, seed: int = 0):
    """The data set a spec names, for training (augmented, ``crop``-sized) or evaluation.

    SynthCity's training and validation scenes come from different seeds, so they never
    overlap. Folder data sets are read as they are for evaluation (any image size, so
    evaluate with batch size 1) and flipped, rescaled and cropped for training.
    """
    from .datasets import CityscapesSegmentation, FlipScaleCrop, SynthCity, VOCSegmentation

    scheme, root = parse_data_spec(spec)
    if scheme == "synthcity":
        # Offset seeds: the validation scenes are not a shuffled copy of the training ones.
        return SynthCity(n, size=size, seed=seed + (0 if split == "train" else 10_000), augment=train,
                         crop=crop)
    transform = FlipScaleCrop(scale_range=(0.5, 2.0), crop=crop) if train else None
    cls = VOCSegmentation if scheme == "voc" else CityscapesSegmentation
    return cls(root, split=split, transform=transform)


def class_names(dataset) -> list:
    names = getattr(dataset, "classes", None)
    return list(names) if names else [str(i) for i in range(dataset_num_classes(dataset))]


def dataset_num_classes(dataset) -> int:
    n = getattr(dataset, "num_classes", None)
    if not n:
        raise ValueError(f"{type(dataset).__name__} does not say how many classes it has (num_classes)")
    return int(n)


def parse_model_options(items) -> dict:
    """``["width=8", "norm='group'"]`` -> ``{"width": 8, "norm": "group"}`` (Python literals; bare words are strings)."""
    options = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-option must be KEY=VALUE, got {item!r}")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return options


# -- torch.distributed ----------------------------------------------------------------------
def init_distributed() -> tuple[int, int, torch.device]:
    """Join the ``torchrun`` process group if there is one: ``(rank, world_size, device)``."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1 or "RANK" not in os.environ:
        from .device import select_device

        return 0, 1, select_device()
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
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


class ShardSampler(torch.utils.data.Sampler):
    """Every ``world``-th index from ``rank``, in order, without padding.

    ``DistributedSampler`` repeats samples to give every rank as many; for evaluation that
    would count some pixels twice, so the all-reduced confusion matrix would no longer be
    the data set's. Here the shards partition the data set exactly.
    """

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def run_main(body, argv, prog: str) -> int:
    """Run ``body(argv)``; a bad input becomes one ``prog: error: ...`` line and exit code 2."""
    completed = False
    try:
        code = body(argv) or 0
        completed = True
        return code
    except (CLIError, ValueError, FileNotFoundError) as err:
        # Our own messages are one line; a data set's "missing files" message adds the
        # expected folder layout below it, which is worth the extra lines.
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    finally:
        shutdown_distributed(wait_for_all=completed)


def check_batch_split(batch_size: int, world: int) -> int:
    """Per-process batch size: the global ``batch_size`` shared evenly by ``world`` processes."""
    batch_size = check_int("batch_size", batch_size, 1)
    if batch_size % world:
        raise ValueError(f"--batch-size is the global batch and must be a multiple of the number of "
                         f"processes ({world}), got {batch_size}")
    return batch_size // world
