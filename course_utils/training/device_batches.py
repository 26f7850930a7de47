"""Batches that travel to the GPU as 8-bit pixels and are made ready to train there.

A float32 scene is four times the bytes of its 8-bit storage, and flipping, resizing and
cropping it sample by sample on one CPU thread in the training process (how batches are
made without worker processes) keeps a fast GPU waiting. :class:`DeviceBatches` wraps a DataLoader
over a data set built with ``augment_on="device"`` (its batches are ``(uint8 images, uint8
labels, indices)``): it copies each batch to the device (asynchronously, from pinned
memory on CUDA) and lets the data set convert and augment the whole batch there
(``dataset.augment_batch``). :func:`~course_utils.training.make_loader` builds one by
itself on CUDA.
"""
from __future__ import annotations

import torch

__all__ = ["DeviceBatches"]


class DeviceBatches:
    """``loader``'s batches on ``device`` as ``(float32 images, int64 labels)``.

    ``augment(images, labels, indices)`` makes each batch ready on the device; by default
    it is ``loader.dataset.augment_batch`` (SynthCity with ``augment_on="device"``), which
    reads the data set's epoch, so augmentations change with ``set_epoch`` and depend only
    on ``(seed, epoch, index)``.

    To :func:`~course_utils.training.fit` it is the loader itself: ``len``, and the
    ``sampler``, ``batch_sampler``, ``dataset``, ``generator`` and ``num_workers`` it
    reads to set the epoch, to build batches with one thread, and to save and restore the
    random states that make a resumed run exact, are the wrapped loader's.
    """

    def __init__(self, loader, device, augment=None):
        self.loader = loader
        self.device = torch.device(device)
        self.augment = augment if augment is not None else getattr(loader.dataset, "augment_batch", None)
        if not callable(self.augment):
            raise ValueError("augment must be a function (images, labels, indices) -> (images, labels); the "
                             f"loader's data set ({type(loader.dataset).__name__}) has no augment_batch to use "
                             "instead (build SynthCity with augment_on='device')")

    def __iter__(self):
        # Pinned memory (make_loader pins on CUDA) lets the copy overlap the GPU's work.
        non_blocking = self.device.type == "cuda"
        for batch in self.loader:
            if not isinstance(batch, (tuple, list)) or len(batch) != 3:
                raise ValueError("DeviceBatches needs batches (uint8 images, labels, indices), from a data set "
                                 "built with augment_on='device'")
            images, labels, indices = batch
            images = images.to(self.device, non_blocking=non_blocking)
            labels = labels.to(self.device, non_blocking=non_blocking)
            yield self.augment(images, labels, indices)

    def __len__(self) -> int:
        return len(self.loader)

    # What fit and the random-state helpers read from a loader: the wrapped one's.
    @property
    def dataset(self):
        return self.loader.dataset

    @property
    def sampler(self):
        return getattr(self.loader, "sampler", None)

    @property
    def batch_sampler(self):
        return getattr(self.loader, "batch_sampler", None)

    @property
    def generator(self):
        return getattr(self.loader, "generator", None)

    @property
    def num_workers(self) -> int:
        return getattr(self.loader, "num_workers", 0)

    @property
    def batch_size(self):
        return getattr(self.loader, "batch_size", None)

    def __repr__(self):
        return f"DeviceBatches({type(self.loader).__name__} of {len(self)} batches, device={self.device})"
