"""Batches: what one looks like (:func:`split_batch`, :func:`check_batch`,
:func:`check_logits`), and the loaders that make them (:func:`make_loader`,
:func:`batches`, :class:`ShardSampler`, and :class:`~.device_batches.DeviceBatches` for
batches made ready on the GPU)."""
from __future__ import annotations

import random

import numpy as np
import torch

from .._checks import check_choice, check_int
from ..device import select_device
from .device_batches import DeviceBatches

__all__ = ["split_batch", "check_batch", "check_logits", "make_loader", "batches", "ShardSampler", "loader_len",
           "set_sampler_epoch"]


def split_batch(batch):
    """``(images, labels)`` from a batch given as a tuple or list."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"a batch must be a tuple or list (images, labels), got {type(batch).__name__}")


def check_batch(images, labels) -> None:
    """Raise ``ValueError`` unless images are float ``(N, C, H, W)`` and labels integer ``(N, H, W)``."""
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError(f"images and labels must be torch tensors, got {type(images).__name__} and "
                         f"{type(labels).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point (float32 in [0, 1]), got dtype {images.dtype}")
    if labels.ndim != 3:
        raise ValueError(f"labels must have shape (N, H, W), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must hold integer class indices (int64), got dtype {labels.dtype}")
    if images.shape[0] != labels.shape[0] or images.shape[2:] != labels.shape[1:]:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} disagree: labels must be "
                         "(N, H, W) for images (N, C, H, W)")


def check_logits(logits, labels, num_classes: int | None = None) -> None:
    """Raise ``ValueError`` unless ``logits`` are ``(N, num_classes, H, W)`` for labels ``(N, H, W)``."""
    if logits.ndim != 4 or logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]:
        raise ValueError(f"the model's logits {tuple(logits.shape)} do not match the labels "
                         f"{tuple(labels.shape)}: expected (N, num_classes, H, W) at the label size")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"the model outputs {logits.shape[1]} classes but num_classes is {num_classes}")


def make_loader(dataset, batch_size: int, *, shuffle: bool = False, device=None, num_workers: int = 0,
                seed: int = 0, drop_last: bool | None = None, sampler=None, augment_on: str = "auto"):
    """A ``DataLoader`` set up for training or evaluation on ``device``.

    Pinned memory on CUDA (so ``.to(device, non_blocking=True)`` overlaps the copy),
    a seeded shuffle, workers that re-seed NumPy and ``random`` (forked workers would
    otherwise share one NumPy stream and augment identically), and ``drop_last`` for
    training so BatchNorm never sees a last batch of one image. A resumed ``fit``
    replays the shuffle and the workers' seeds exactly.

    ``augment_on``: ``"loader"`` makes each sample ready (float, augmented) where the
    DataLoader runs; ``"device"`` ships a data set's 8-bit batches to ``device`` and
    converts and augments each whole batch there (a data set that offers it, such as
    SynthCity; the result is a :class:`~.device_batches.DeviceBatches`); ``"auto"``
    chooses ``"device"`` on CUDA for such data sets, else ``"loader"``.
    """
    batch_size = check_int("batch_size", batch_size, 1)
    num_workers = check_int("num_workers", num_workers, 0)
    seed = check_int("seed", seed)
    check_choice("augment_on", augment_on, ("auto", "loader", "device"))
    device = torch.device(device) if device is not None else select_device()
    batch_ready = hasattr(dataset, "with_augment_on")
    if augment_on == "device" and not batch_ready:
        raise ValueError(f"augment_on='device' needs a data set that converts and augments whole batches "
                         f"(SynthCity); {type(dataset).__name__} does not: use augment_on='loader'")
    on_device = augment_on == "device" or (augment_on == "auto" and device.type == "cuda" and batch_ready)
    if on_device:
        dataset = dataset.with_augment_on("device")
    training = shuffle or sampler is not None and not isinstance(sampler, ShardSampler)
    if sampler is None and shuffle:
        # The shuffle gets a generator of its own, so it does not depend on how many
        # worker seeds were drawn from the loader's generator before it.
        sampler = torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        pin_memory=device.type == "cuda", drop_last=training if drop_last is None else drop_last,
        generator=torch.Generator().manual_seed(seed + 1), worker_init_fn=_seed_worker if num_workers else None,
        # Not persistent: workers hold a copy of the dataset made when they start, so a
        # dataset's set_epoch (SynthCity's fresh augmentation per epoch) would never reach
        # persistent ones, and a resumed run would start them at a different epoch.
        persistent_workers=False)
    return DeviceBatches(loader, device) if on_device else loader


class ShardSampler(torch.utils.data.Sampler):
    """Every ``world``-th index from ``rank``, in order, without padding.

    ``DistributedSampler`` repeats samples to give every rank as many; for evaluation that
    would count some pixels twice, so the all-reduced confusion matrix would no longer be
    the data set's. Here the shards partition the data set exactly (a rank may get none:
    it still joins the sums).
    """

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def batches(loader):
    """Iterate ``loader``, building each batch with a single intra-op thread.

    With ``num_workers=0`` the batches are made in this process, between training steps,
    from many tiny tensor operations (a uint8 -> float conversion, a flip, a resize per
    sample, a stack). Spread over OpenMP threads they gain nothing, and on a busy machine
    each one waits for a descheduled thread, which on two shared cores slowed loading by
    more than an order of magnitude. The model's own operations
    still get every thread; worker processes already run with one. A side effect: some
    kernels round the last bit differently with more threads, so one thread also makes the
    samples the same on a laptop with 8 cores as on the 2-core CI machine.
    """
    it = iter(loader)
    in_process = getattr(loader, "num_workers", 0) == 0
    while True:
        threads = torch.get_num_threads()
        if in_process and threads > 1:
            torch.set_num_threads(1)
        try:
            batch = next(it)
        except StopIteration:
            return
        finally:
            if in_process and threads > 1:
                torch.set_num_threads(threads)
        yield batch


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def loader_len(loader, required: bool = True):
    try:
        return len(loader)
    except TypeError:
        if required:
            raise ValueError("train_loader must have a length (a map-style dataset), so epochs and the "
                             "schedule can be planned") from None
        return None


def set_sampler_epoch(loader, epoch: int) -> None:
    # Samplers (DistributedSampler) and datasets with epoch-dependent augmentation
    # (SynthCity) both follow the set_epoch convention.
    seen = set()
    for s in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
              getattr(getattr(loader, "batch_sampler", None), "sampler", None),
              getattr(loader, "dataset", None)):
        if s is not None and id(s) not in seen and hasattr(s, "set_epoch"):
            seen.add(id(s))
            s.set_epoch(epoch)
