"""Joint image/label augmentation, shared by SynthCity and the real-data folder loaders.

The image and its label map get the same flip, scale and crop; the label is resampled
with ``nearest-exact`` so class ids stay class ids, and padding is ``IGNORE_INDEX`` so
padded pixels count in neither loss nor metric.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_hw
from ..labels import IGNORE_INDEX

__all__ = ["flip_scale_crop", "FlipScaleCrop", "augmentation_generator"]


def flip_scale_crop(image, label, generator=None, scale_range=(0.75, 1.25), crop=None,
                    flip: bool = True, ignore_index: int = IGNORE_INDEX):
    """Random horizontal flip, random rescale, then a random crop (padding if needed).

    ``image`` is a float tensor ``(3, H, W)``, ``label`` an integer tensor ``(H, W)``;
    both get the same flip, scale and window. The image is resampled bilinearly, the
    label with ``nearest-exact``, whose half-pixel convention is the bilinear one, so
    the two stay aligned. Padding is 0 for the image and ``ignore_index`` for the label,
    so padded pixels do not count in the loss. ``crop`` (int or ``(h, w)``, default: the
    input size) is the output size. All randomness comes from ``generator``
    (a ``torch.Generator``; ``None`` means torch's global one).
    """
    lo, hi = _check_scale_range(scale_range)
    if image.ndim != 3 or label.ndim != 2 or tuple(image.shape[1:]) != tuple(label.shape):
        raise ValueError(f"image must be (C, H, W) and label (H, W) of the same H, W; got "
                         f"{tuple(image.shape)} and {tuple(label.shape)}")
    h, w = label.shape
    ch, cw = (h, w) if crop is None else check_hw("crop", crop, 1)
    g = _geometry(h, w, ch, cw, _draw(generator), lo, hi, flip)
    if g.flipped:
        image, label = image.flip(-1), label.flip(-1)
    nh, nw = g.height, g.width
    if (nh, nw) != (h, w):
        image = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear",
                              align_corners=False, antialias=nh < h)[0]
        label = F.interpolate(label[None, None].float(), size=(nh, nw),
                              mode="nearest-exact")[0, 0].to(label.dtype)
    if g.pad_h or g.pad_w:
        pad = (g.pad_left, g.pad_w - g.pad_left, g.pad_top, g.pad_h - g.pad_top)
        image = F.pad(image, pad, value=0.0)
        label = F.pad(label, pad, value=ignore_index)
    top, left = g.top, g.left
    return (image[:, top:top + ch, left:left + cw].contiguous(),
            label[top:top + ch, left:left + cw].contiguous())


class _Geometry(NamedTuple):
    """One sample's flip, resized size, padding and crop window (in the padded image)."""

    flipped: bool
    height: int
    width: int
    pad_h: int
    pad_w: int
    pad_top: int
    pad_left: int
    top: int
    left: int


def _draw(generator) -> list:
    # Always draw the same four numbers, so one sample's randomness never depends on the
    # branches another took.
    return torch.rand(4, generator=generator, dtype=torch.float64).tolist()


def _geometry(h, w, ch, cw, u, lo, hi, flip) -> _Geometry:
    """Where a flip/scale/crop of an ``h`` x ``w`` input to ``ch`` x ``cw`` goes, from its
    four uniform numbers ``u``: the one recipe of the per-sample and whole-batch paths."""
    flipped = bool(flip and u[0] < 0.5)
    s = lo + (hi - lo) * u[1]
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    ph, pw = max(0, ch - nh), max(0, cw - nw)
    pad_top, pad_left = int(u[2] * (ph + 1)), int(u[3] * (pw + 1))
    top, left = int(u[2] * (nh + ph - ch + 1)), int(u[3] * (nw + pw - cw + 1))
    return _Geometry(flipped, nh, nw, ph, pw, pad_top, pad_left, top, left)


class FlipScaleCrop:
    """:func:`flip_scale_crop` as a joint transform ``t(image, label, generator=None)``.

    Usable as the ``transform`` of the folder data sets; without a generator it draws
    from torch's global generator, which ``torch.manual_seed`` (and the DataLoader's
    per-worker seeding) makes reproducible.
    """

    def __init__(self, scale_range=(0.75, 1.25), crop=None, flip: bool = True):
        self.scale_range = _check_scale_range(scale_range)
        self.crop = None if crop is None else check_hw("crop", crop, 1)
        self.flip = bool(flip)

    def __call__(self, image, label, generator=None):
        return flip_scale_crop(image, label, generator, self.scale_range, self.crop, self.flip)

    def __repr__(self):
        return f"FlipScaleCrop(scale_range={self.scale_range}, crop={self.crop}, flip={self.flip})"


def augmentation_generator(seed: int, epoch: int, index: int):
    """The ``torch.Generator`` that augments sample ``index`` in ``epoch`` (see :class:`SynthCity`)."""
    state = np.random.SeedSequence([seed, 0x5C17, epoch, index]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def _check_scale_range(scale_range):
    try:
        lo, hi = (float(v) for v in scale_range)
    except (TypeError, ValueError):
        raise ValueError(f"scale_range must be a pair (low, high), got {scale_range!r}") from None
    if not (0.1 <= lo <= hi <= 10.0):
        raise ValueError(f"scale_range must satisfy 0.1 <= low <= high <= 10, got {scale_range!r}")
    return lo, hi
