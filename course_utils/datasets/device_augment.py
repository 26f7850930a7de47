"""The flip/scale/crop of :func:`~course_utils.datasets.flip_scale_crop`, for a whole batch
on whatever device the batch is on.

Per sample, the flip, the bilinear resize and the crop (with its padding) are linear in
the pixels and separable: one sparse map along the width and one along the height. Each
output pixel is a short weighted sum of input pixels ("taps"). The weights are PyTorch's
own: read off ``F.interpolate`` applied to an identity matrix (antialiasing included, so
a downscaled sample is filtered exactly like the per-sample path filters it). The batch
is then resampled with a few gathers, multiplies and adds, width first and then height,
the order of PyTorch's CPU kernel. Labels follow the ``nearest-exact`` index maps, read
off ``F.interpolate`` the same way, and need no arithmetic at all.

What comes out, measured against the per-sample path on the CPU (tests/test_device_batches.py):
labels, flips, crops and padding are identical; resampled image values agree to within
:data:`IMAGE_TOLERANCE` (a few float32 roundings: PyTorch's vectorised kernels may fuse
a multiply and an add, or sum the same terms in another order). The geometry (which flip, scale and window) is the per-sample
path's own code, fed with the same four numbers from each sample's generator, so a
sample's augmentation does not depend on the batch it travels in.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_hw
from ..labels import IGNORE_INDEX
from .transforms import _check_scale_range, _draw, _geometry

__all__ = ["flip_scale_crop_batch", "to_unit_float", "IMAGE_TOLERANCE"]

# Largest difference from the per-sample path's image values that the tests allow: about
# eight float32 roundings of a value in [0, 1]; 8-bit storage steps are 1/255 = 4e-3.
IMAGE_TOLERANCE = 1e-6


def to_unit_float(images) -> torch.Tensor:
    """uint8 images as float32 in [0, 1], equal bit for bit to ``images.float() / 255`` on the CPU.

    CUDA divides by a Python number through its reciprocal, one rounding away from the
    CPU's division; a table of the CPU's 256 values gives the same floats on every device.
    Float input is returned as float32 unchanged.
    """
    if images.dtype != torch.uint8:
        return images.float()
    table = _unit_table().to(images.device, non_blocking=True)
    return table.index_select(0, images.reshape(-1).int()).view(images.shape)


@functools.lru_cache(maxsize=1)
def _unit_table() -> torch.Tensor:
    return torch.arange(256, dtype=torch.uint8).float().div_(255.0)


def flip_scale_crop_batch(images, labels, generators, scale_range=(0.75, 1.25), crop=None,
                          flip: bool = True, ignore_index: int = IGNORE_INDEX):
    """:func:`~course_utils.datasets.flip_scale_crop` applied to every sample of a batch at once.

    ``images`` ``(N, C, H, W)``, uint8 (read as ``x / 255``, as SynthCity stores them) or
    float; ``labels`` integer ``(N, H, W)``; ``generators`` one ``torch.Generator`` per
    sample. Sample ``i`` gets what ``flip_scale_crop(images[i], labels[i], generators[i],
    scale_range, crop, flip)`` gives: the same flip, scale and window, labels identical,
    image values within :data:`IMAGE_TOLERANCE`. Returns ``(float32 images (N, C, ch, cw),
    labels (N, ch, cw))`` on the batch's device, the labels in their own dtype (uint8 stays
    uint8 when ``ignore_index`` fits in it). Only the small index and weight tables are
    built on the CPU.
    """
    lo, hi = _check_scale_range(scale_range)
    if images.ndim != 4 or labels.ndim != 3 or images.shape[0] != labels.shape[0] \
            or tuple(images.shape[2:]) != tuple(labels.shape[1:]):
        raise ValueError(f"images must be (N, C, H, W) and labels (N, H, W) of the same N, H, W; got "
                         f"{tuple(images.shape)} and {tuple(labels.shape)}")
    n, _, h, w = images.shape
    if len(generators) != n:
        raise ValueError(f"generators must hold one generator per sample ({n}), got {len(generators)}")
    ch, cw = (h, w) if crop is None else check_hw("crop", crop, 1)
    geometry = [_geometry(h, w, ch, cw, _draw(g), lo, hi, flip) for g in generators]
    # Antialiasing follows the per-sample path's rule: on when the height shrinks.
    rows = _axis_maps(h, ch, [(g.height, g.top - g.pad_top, g.height < h, False) for g in geometry])
    cols = _axis_maps(w, cw, [(g.width, g.left - g.pad_left, g.height < h, g.flipped) for g in geometry])
    rows, cols = ([torch.from_numpy(a).to(images.device, non_blocking=True) for a in m] for m in (rows, cols))
    x = _resample(to_unit_float(images), cols[0], cols[1], dim=3)
    x = _resample(x, rows[0], rows[1], dim=2)
    return x, _pick_labels(labels, rows, cols, ignore_index)


def _axis_maps(size: int, out: int, samples):
    """Index and weight tables of one axis for a batch.

    ``samples`` holds ``(resized size, offset, antialias, flipped)`` per sample: output
    position ``p`` is position ``p + offset`` of the resized axis, or padding when that
    falls outside it. Returns ``(taps (N, out, K) int64, weights (N, out, K) float32,
    nearest (N, out) int64, inside (N, out) bool)``; padding has weight 0.
    """
    tables = [_linear_taps(size, resized, aa) for resized, _, aa, _ in samples]
    k = max(t[0].shape[1] for t in tables)
    taps = np.zeros((len(samples), out, k), np.int64)
    weights = np.zeros((len(samples), out, k), np.float32)
    nearest = np.zeros((len(samples), out), np.int64)
    inside = np.zeros((len(samples), out), bool)
    pos = np.arange(out)
    for i, ((resized, offset, _, flipped), (t_idx, t_w)) in enumerate(zip(samples, tables)):
        src = pos + offset
        inside[i] = (src >= 0) & (src < resized)
        src = np.clip(src, 0, resized - 1)
        taps[i, :, :t_idx.shape[1]] = t_idx[src]
        weights[i, :, :t_idx.shape[1]] = t_w[src] * inside[i, :, None]
        nearest[i] = _nearest_index(size, resized)[src]
        if flipped:       # the per-sample path flips the input before resizing it
            taps[i], nearest[i] = size - 1 - taps[i], size - 1 - nearest[i]
    return taps, weights, nearest, inside


@functools.lru_cache(maxsize=4096)
def _linear_taps(size: int, resized: int, antialias: bool):
    """PyTorch's bilinear weights from ``size`` to ``resized`` pixels: ``(taps, weights)``,
    each ``(resized, K)``, taps in increasing order (PyTorch's summation order).

    Read along the width of an identity "image": along a height of 1, PyTorch's
    antialiased kernel gives other weights than it uses for real images.
    """
    eye = torch.eye(size).reshape(1, size, 1, size)
    dense = F.interpolate(eye, size=(1, resized), mode="bilinear", align_corners=False,
                          antialias=antialias)[0, :, 0, :].T.numpy()
    # Each output's weights are one run of neighbouring inputs (a triangle filter's support).
    nonzero = dense != 0
    first = nonzero.argmax(1)
    last = size - 1 - nonzero[:, ::-1].argmax(1)
    span = np.arange(int((last - first).max()) + 1)
    taps = np.minimum(first[:, None] + span, size - 1)
    weights = np.where(first[:, None] + span <= last[:, None], np.take_along_axis(dense, taps, axis=1), 0)
    return taps, weights.astype(np.float32)


@functools.lru_cache(maxsize=4096)
def _nearest_index(size: int, resized: int) -> np.ndarray:
    """The input pixel ``nearest-exact`` picks for each of ``resized`` outputs."""
    ramp = torch.arange(size, dtype=torch.float32).reshape(1, 1, 1, size)
    return F.interpolate(ramp, size=(1, resized), mode="nearest-exact")[0, 0, 0].long().numpy()


def _resample(x, taps, weights, dim: int):
    """``out[..., p] = sum_k x[..., taps[p, k]] * weights[p, k]`` along ``dim`` (2 or 3), per sample."""
    n, c, h, w = x.shape
    out_len = taps.shape[1]
    shape = (n, c, h, out_len) if dim == 3 else (n, c, out_len, w)
    view = (lambda t: t[:, None, None, :]) if dim == 3 else (lambda t: t[:, None, :, None])
    out = None
    for k in range(taps.shape[2]):
        term = x.gather(dim, view(taps[:, :, k]).expand(shape)) * view(weights[:, :, k])
        out = term if out is None else out.add_(term)
    return out


def _pick_labels(labels, rows, cols, ignore_index: int):
    """Labels through the nearest-exact maps; padding becomes ``ignore_index``."""
    if labels.dtype == torch.uint8 and not 0 <= ignore_index <= 255:
        labels = labels.long()
    n, h, _ = labels.shape
    out_h, out_w = rows[2].shape[1], cols[2].shape[1]
    y = labels.gather(2, cols[2][:, None, :].expand(n, h, out_w))
    y = y.gather(1, rows[2][:, :, None].expand(n, out_h, out_w))
    padding = ~(rows[3][:, :, None] & cols[3][:, None, :])
    return y.masked_fill_(padding, ignore_index)
