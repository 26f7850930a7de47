"""SynthCity: street scenes drawn procedurally, so the course needs no download.

This module is the public face: the classes and their colours, :func:`generate`, the
:class:`SynthCity` data set and :func:`class_frequencies`. The drawing itself is in
:mod:`.render`, the augmentation in :mod:`.transforms` (re-exported here).

Determinism: scene ``i`` of ``generate(n, size, seed)`` is drawn from its own generator
``SeedSequence(seed, spawn_key=(i,))``; it depends on ``(seed, i, size)`` only, so
``generate(10, s, seed)[k][:3]`` equals ``generate(3, s, seed)[k]``.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_choice, check_hw, check_int
from ..labels import IGNORE_INDEX, as_label_array
from .device_augment import flip_scale_crop_batch, to_unit_float
from .render import MAX_SIZE, MIN_SIZE, Scene, render_scene, scene_rng
from .transforms import FlipScaleCrop, augmentation_generator, flip_scale_crop

CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "pole", "traffic sign", "car",
           "person")
# The official Cityscapes colours of these classes (cityscapesScripts, helpers/labels.py),
# so a student who later opens Cityscapes sees familiar colours.
PALETTE = np.array([(128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35),
                    (70, 130, 180), (153, 153, 153), (220, 220, 0), (0, 0, 142),
                    (220, 20, 60)], dtype=np.uint8)
NUM_CLASSES = len(CLASSES)
MAX_SCENES = 1_000_000
# Where an augmented sample is made: per sample in the loader, or per batch on the device.
AUGMENT_ON = ("loader", "device")

__all__ = ["CLASSES", "PALETTE", "NUM_CLASSES", "IGNORE_INDEX", "generate", "render_scene",
           "SynthCity", "class_frequencies", "flip_scale_crop", "FlipScaleCrop",
           "augmentation_generator"]


def generate(n: int, size=128, seed: int = 0):
    """``n`` street scenes: ``(images float32 (n, 3, H, W) in [0, 1], labels int64 (n, H, W))``.

    ``size`` is an int (square) or ``(H, W)``; labels index :data:`CLASSES`. The same
    ``seed`` gives identical arrays, and scene ``i`` does not depend on ``n``.
    """
    n = check_int("n", n, 1, MAX_SCENES)
    h, w = check_hw("size", size, MIN_SIZE, MAX_SIZE)
    seed = check_int("seed", seed, 0)
    images = np.empty((n, 3, h, w), dtype=np.float32)
    labels = np.empty((n, h, w), dtype=np.int64)
    for i in range(n):
        images[i], labels[i] = Scene(h, w, scene_rng(seed, i)).render()
    return images, labels


def class_frequencies(labels, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX):
    """Fraction of the non-ignored pixels that belong to each class, shape ``(num_classes,)``.

    ``labels`` is an integer array or tensor of any shape (or a :class:`SynthCity`).
    """
    num_classes = check_int("num_classes", num_classes, 1)
    if isinstance(labels, SynthCity):
        labels = labels.labels
    labels = as_label_array("labels", labels, ndims=None, num_classes=num_classes,
                            ignore_index=ignore_index)
    flat = labels.ravel()
    valid = flat != ignore_index
    counts = np.bincount(flat[valid].astype(np.int64), minlength=num_classes).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


class SynthCity(Dataset):
    """``n`` pre-generated SynthCity scenes as a ``torch.utils.data.Dataset``.

    ``ds[i]`` is ``(image float32 tensor (3, H, W) in [0, 1], label int64 tensor (H, W))``.
    Scenes are stored as 8-bit images (like photos; within 1/510 of :func:`generate`'s
    floats) and 8-bit labels, a quarter of the memory of float32.

    With ``augment=True`` every access applies :func:`flip_scale_crop` (flip, a scale in
    ``scale_range``, a ``crop``-sized window, default the scene size). Its randomness is
    a function of ``(seed, epoch, i)`` only (:func:`augmentation_generator`), so the
    same index gives the same sample in the same epoch whatever the DataLoader's
    shuffling, worker count or process: call ``ds.set_epoch(e)`` before each epoch (as
    with ``DistributedSampler``) to get fresh augmentations that are still reproducible.

    ``augment_on="device"`` leaves the conversion and the augmentation to the device that
    trains: ``ds[i]`` is then ``(uint8 image (3, H, W), uint8 label (H, W), i)``, a
    DataLoader ships those compact batches, and :meth:`augment_batch` turns one into
    ``(float32 images, int64 labels)`` where it lies, augmenting the whole batch at once
    with each sample's own generator (:func:`flip_scale_crop_batch`): the same flips,
    scales and windows as ``augment_on="loader"`` (the default), labels identical, image
    values within ``device_augment.IMAGE_TOLERANCE``.
    :func:`course_utils.training.make_loader` chooses it by itself on CUDA.
    """

    def __init__(self, n: int, size=128, seed: int = 0, augment: bool = False,
                 scale_range=(0.75, 1.25), crop=None, augment_on: str = "loader"):
        n = check_int("n", n, 1, MAX_SCENES)
        self.augment_on = check_choice("augment_on", augment_on, AUGMENT_ON)
        h, w = self.size = check_hw("size", size, MIN_SIZE, MAX_SIZE)
        self.seed = check_int("seed", seed, 0)
        self.augment = bool(augment)
        self.transform = FlipScaleCrop(scale_range, crop)       # validated even when unused
        # Rendered straight into 8-bit storage, scene by scene: no float32 copy of the
        # whole set ever exists (2000 scenes at 128 px: 98 MB instead of 390 MB).
        images = np.empty((n, 3, h, w), dtype=np.uint8)
        labels = np.empty((n, h, w), dtype=np.uint8)
        for i in range(n):
            img, labels[i] = Scene(h, w, scene_rng(self.seed, i)).render()
            np.rint(img * 255.0, out=img)
            images[i] = img
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
        self.epoch = 0
        self.classes, self.palette, self.num_classes = CLASSES, PALETTE, NUM_CLASSES

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} scenes")
        index %= n
        if self.augment_on == "device":
            return self.images[index], self.labels[index], index
        image = self.images[index].float().div_(255.0)
        label = self.labels[index].long()
        if self.augment:
            image, label = self.transform(image, label,
                                          augmentation_generator(self.seed, self.epoch, index))
        return image, label

    def augment_batch(self, images, labels, indices):
        """A batch of ``augment_on="device"`` samples, ready to train, on the device it is on.

        ``images`` uint8 ``(N, 3, H, W)``, ``labels`` ``(N, H, W)``, ``indices`` the samples'
        indices (the third item of each sample). Returns ``(float32 images in [0, 1],
        int64 labels)``; with ``augment=True`` sample ``i`` is flipped, scaled and cropped
        as ``ds[i]`` would be in the current epoch (``set_epoch``).
        """
        if self.augment:
            generators = [augmentation_generator(self.seed, self.epoch, i) for i in _as_ints(indices)]
            t = self.transform
            images, labels = flip_scale_crop_batch(images, labels, generators, t.scale_range, t.crop, t.flip)
        else:
            images = to_unit_float(images)
        return images, labels.long()

    def with_augment_on(self, where: str) -> "SynthCity":
        """This data set (the same scenes, no copy of them) with ``augment_on=where``."""
        twin = copy.copy(self)
        twin.augment_on = check_choice("augment_on", where, AUGMENT_ON)
        return twin

    def class_frequencies(self):
        return class_frequencies(self.labels)

    def __repr__(self):
        h, w = self.size
        on = f", augment_on={self.augment_on!r}" if self.augment_on != "loader" else ""
        return (f"SynthCity(n={len(self)}, size=({h}, {w}), seed={self.seed}, "
                f"augment={self.augment}{on})")


def _as_ints(indices) -> list:
    return indices.tolist() if isinstance(indices, torch.Tensor) else [int(i) for i in indices]
