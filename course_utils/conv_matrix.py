"""A convolution is a matrix; its transpose is the "transposed convolution".

Conventions (shared with notebook 03 and its tests):

* Single channel, and "convolution" means what ``F.conv2d`` computes: cross-correlation,
  output pixel ``(i, j)`` reads input pixel ``(i*s - p + a*d, j*s - p + b*d)`` with kernel
  tap ``(a, b)``. Pixels are flattened row by row (``x.ravel()``), so
  ``conv2d_matrix(k, x.shape, ...) @ x.ravel() == F.conv2d(x, k, ...).ravel()``.
* Every parameter ``stride``, ``padding``, ``dilation`` (and ``output_padding``) is an int
  or a ``(height, width)`` pair, as in PyTorch.
* The transposed convolution is ``C.T``: it sends each input pixel of the *transposed*
  op back along the same taps, so ``C.T @ y`` equals ``F.conv_transpose2d(y, k, ...)``
  with the ``output_padding`` that restores the original size (see
  :func:`matching_output_padding`).
* Parameter checks follow PyTorch's rules and raise ``ValueError`` naming the parameter:
  the dilated kernel must fit in the padded input, ``stride >= 1``, ``dilation >= 1``,
  ``padding >= 0`` and ``output_padding < max(stride, dilation)`` per axis. One is
  stricter: a transposed convolution whose padding crops the output to zero pixels is
  refused (PyTorch returns an empty tensor).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import scipy.sparse

from ._checks import as_array, check_hw, check_int

AXES = ("height", "width")


# -- parameters ------------------------------------------------------------------------
def _is_pair(value) -> bool:
    return isinstance(value, (tuple, list, np.ndarray))


def _check_output_padding(output_padding, stride, dilation) -> tuple[int, int]:
    op = check_hw("output_padding", output_padding, 0)
    for axis, o, s, d in zip(AXES, op, stride, dilation):
        # PyTorch's rule (per axis): anything larger than this would add rows that no
        # input pixel can reach, so the size would not be "ambiguous" any more, just wrong.
        if o >= max(s, d):
            raise ValueError(f"output_padding must be smaller than stride or dilation "
                             f"(< max(stride, dilation) = {max(s, d)}) along the {axis}, got {o}")
    return op


def _out_1d(n: int, k: int, s: int, p: int, d: int, axis: str | None = None) -> int:
    extent = d * (k - 1) + 1
    if extent > n + 2 * p:
        where = f" along the {axis}" if axis else ""
        raise ValueError(
            f"kernel is larger than the padded input{where}: the kernel spans {extent} pixels "
            f"(dilation {d} x (kernel size {k} - 1) + 1) but the padded input has {n + 2 * p} "
            f"(input {n} + 2 x padding {p}); use a smaller kernel or dilation, or more padding")
    return (n + 2 * p - extent) // s + 1


def _unpack(values, pairs):
    return tuple(values) if pairs else values[0]


def conv_output_size(n, kernel_size, stride=1, padding=0, dilation=1):
    """Output size of ``F.conv2d``: ``floor((n + 2p - d(k-1) - 1) / s) + 1``.

    Each argument is an int or a ``(height, width)`` pair; the answer is an int when all
    are ints, else a pair.
    """
    pairs = any(_is_pair(v) for v in (n, kernel_size, stride, padding, dilation))
    n2, k2 = check_hw("n", n, 1), check_hw("kernel_size", kernel_size, 1)
    s2, p2 = check_hw("stride", stride, 1), check_hw("padding", padding, 0)
    d2 = check_hw("dilation", dilation, 1)
    sizes = [_out_1d(*args, axis=ax if pairs else None) for *args, ax in zip(n2, k2, s2, p2, d2, AXES)]
    return _unpack(sizes, pairs)


def conv_transpose_output_size(n, kernel_size, stride=1, padding=0, output_padding=0, dilation=1):
    """Output size of ``F.conv_transpose2d``: ``(n-1)s - 2p + d(k-1) + output_padding + 1``.

    The transposed convolution maps a conv's output size back to its input size; since
    ``floor`` loses up to ``s-1`` pixels, ``output_padding`` picks which of the input sizes
    that all give ``n`` is meant. Raises if the padding crops the output to zero pixels
    or fewer (PyTorch raises below zero and returns an empty tensor at exactly zero,
    which is never what a student meant).
    """
    pairs = any(_is_pair(v) for v in (n, kernel_size, stride, padding, output_padding, dilation))
    n2, k2 = check_hw("n", n, 1), check_hw("kernel_size", kernel_size, 1)
    s2, p2 = check_hw("stride", stride, 1), check_hw("padding", padding, 0)
    d2 = check_hw("dilation", dilation, 1)
    op2 = _check_output_padding(output_padding, s2, d2)
    sizes = []
    for ni, k, s, p, o, d, axis in zip(n2, k2, s2, p2, op2, d2, AXES):
        size = (ni - 1) * s - 2 * p + d * (k - 1) + o + 1
        if size < 1:
            where = f" along the {axis}" if pairs else ""
            raise ValueError(f"padding {p} is too large for this transposed convolution{where}: it would "
                             f"crop the output to {size} pixels; use padding <= {(size - 1 + 2 * p) // 2}")
        sizes.append(size)
    return _unpack(sizes, pairs)


def matching_output_padding(input_size, kernel_size, stride=1, padding=0, dilation=1):
    """The ``output_padding`` that makes ``conv_transpose2d`` return ``input_size`` again.

    It is the remainder the conv's ``floor`` dropped: ``(n + 2p - d(k-1) - 1) mod s``.
    Always ``< stride``, so PyTorch accepts it.
    """
    pairs = any(_is_pair(v) for v in (input_size, kernel_size, stride, padding, dilation))
    n2, k2 = check_hw("input_size", input_size, 1), check_hw("kernel_size", kernel_size, 1)
    s2, p2 = check_hw("stride", stride, 1), check_hw("padding", padding, 0)
    d2 = check_hw("dilation", dilation, 1)
    out = []
    for n, k, s, p, d, axis in zip(n2, k2, s2, p2, d2, AXES):
        _out_1d(n, k, s, p, d, axis if pairs else None)
        out.append((n + 2 * p - d * (k - 1) - 1) % s)
    return _unpack(out, pairs)


# -- the matrix ------------------------------------------------------------------------
def _kernel(kernel) -> np.ndarray:
    k = as_array("kernel", kernel, ndims=(2, 4))
    if k.ndim == 4:
        if k.shape[:2] != (1, 1):
            raise ValueError(f"kernel must be 2-D (kh, kw) or a single-channel (1, 1, kh, kw) weight, "
                             f"got shape {k.shape}")
        k = k[0, 0]
    if k.size == 0:
        raise ValueError(f"kernel must not be empty, got shape {k.shape}")
    return k


def _triplets(k: np.ndarray, shape, stride, padding, dilation):
    """``(rows, cols, values)`` of C's non-zeros, and C's shape: all taps at once.

    Output pixel ``(i, j)`` is row ``i*ow + j``; tap ``(a, b)`` reads input pixel
    ``(i*s - p + a*d, j*s - p + b*d)``, column ``r*W + c``. Taps landing in the padding
    multiply zeros, so they are simply dropped. No two taps of one row hit the same
    input pixel, so there are no duplicates to sum.
    """
    (h, w), (kh, kw) = shape, k.shape
    oh = _out_1d(h, kh, stride[0], padding[0], dilation[0], "height")
    ow = _out_1d(w, kw, stride[1], padding[1], dilation[1], "width")
    # One axis at a time (small arrays), then broadcast to (oh, ow, kh, kw).
    r = (np.arange(oh) * stride[0] - padding[0])[:, None] + np.arange(kh)[None, :] * dilation[0]
    c = (np.arange(ow) * stride[1] - padding[1])[:, None] + np.arange(kw)[None, :] * dilation[1]
    rows = (np.arange(oh)[:, None, None, None] * ow + np.arange(ow)[None, :, None, None])
    rows = np.broadcast_to(rows, (oh, ow, kh, kw))
    cols = r[:, None, :, None] * w + c[None, :, None, :]
    inside = ((r >= 0) & (r < h))[:, None, :, None] & ((c >= 0) & (c < w))[None, :, None, :]
    vals = np.broadcast_to(k[None, None], (oh, ow, kh, kw))
    return (rows[inside], cols[inside], vals[inside]), (oh * ow, h * w), (oh, ow)


def conv2d_matrix(kernel, input_shape, stride=1, padding=0, dilation=1, sparse=False):
    """The matrix ``C`` of a single-channel ``F.conv2d``: ``C @ x.ravel() == conv2d(x).ravel()``.

    ``kernel``: 2-D ``(kh, kw)`` (or a ``(1, 1, kh, kw)`` weight); ``input_shape``:
    ``(H, W)`` or an int for a square input. ``C`` has one row per output pixel and one
    column per input pixel; row ``i`` holds the kernel's taps at the input pixels that
    output ``i`` reads. Dense NumPy by default, ``scipy.sparse`` CSR with ``sparse=True``
    (a 256x256 input gives a 65536-square C with 9 non-zeros per row: dense would be 32 GB).
    """
    k = _kernel(kernel)
    shape = check_hw("input_shape", input_shape, 1)
    stride, padding = check_hw("stride", stride, 1), check_hw("padding", padding, 0)
    dilation = check_hw("dilation", dilation, 1)
    (rows, cols, vals), cshape, _ = _triplets(k, shape, stride, padding, dilation)
    if sparse:
        # The triplets come out row by row with columns ascending (taps in raster order),
        # which is CSR order already: skipping the COO sort makes the build ~3x faster.
        indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=cshape[0]))))
        return scipy.sparse.csr_matrix((vals, cols, indptr), shape=cshape)
    c = np.zeros(cshape, dtype=k.dtype)
    c[rows, cols] = vals
    return c


def conv2d_output_shape(kernel, input_shape, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """``(oh, ow)``: how to reshape ``C @ x.ravel()`` back into an image."""
    kh, kw = _kernel(kernel).shape
    return conv_output_size(check_hw("input_shape", input_shape, 1), (kh, kw),
                            check_hw("stride", stride, 1), check_hw("padding", padding, 0),
                            check_hw("dilation", dilation, 1))


# -- overlap counts --------------------------------------------------------------------
def _overlap_1d(n: int, k: int, s: int, p: int, d: int, op: int) -> np.ndarray:
    size = conv_transpose_output_size(n, k, s, p, op, d)
    # Input pixel i sends tap a to output i*s - p + a*d; count the arrivals per output.
    where = (np.arange(n)[:, None] * s - p + np.arange(k)[None, :] * d).ravel()
    where = where[(where >= 0) & (where < size)]
    return np.bincount(where, minlength=size)


def overlap_count(kernel_size, stride, input_size=6, padding=0, dilation=1, output_padding=0, ndim=None):
    """How many kernel taps land on each output pixel of a transposed convolution.

    Equal to ``F.conv_transpose2d(ones(input_size), ones(kernel_size), stride, ...)``. In
    the interior the count repeats with period ``stride``; it is the same everywhere only
    when the (dilated) kernel covers every phase equally; with dilation 1, exactly when
    ``kernel_size`` is a multiple of ``stride``. 1-D when every argument is an int (unless ``ndim=2``), 2-D when any is
    a pair; the 2-D map is the outer product of the two 1-D counts.
    """
    args = (kernel_size, stride, input_size, padding, dilation, output_padding)
    if ndim is None:
        ndim = 2 if any(_is_pair(v) for v in args) else 1
    ndim = check_int("ndim", ndim, 1, 2)
    if ndim == 1 and any(_is_pair(v) for v in args):
        raise ValueError("ndim must be 2 when an argument is a (height, width) pair, got 1")
    k2, s2 = check_hw("kernel_size", kernel_size, 1), check_hw("stride", stride, 1)
    n2, p2 = check_hw("input_size", input_size, 1), check_hw("padding", padding, 0)
    d2 = check_hw("dilation", dilation, 1)
    op2 = _check_output_padding(output_padding, s2, d2)
    counts = [_overlap_1d(n, k, s, p, d, o) for n, k, s, p, d, o in zip(n2, k2, s2, p2, d2, op2)]
    return counts[0] if ndim == 1 else np.outer(counts[0], counts[1])


def overlap_period(kernel_size: int, stride: int, dilation: int = 1) -> np.ndarray:
    """The interior overlap counts over one period (``stride`` outputs), 1-D.

    Output phase ``r`` is reached by the taps ``a`` with ``a*d = r (mod s)``. Uniform
    exactly when every phase gets the same number of taps.
    """
    k, s = check_int("kernel_size", kernel_size, 1), check_int("stride", stride, 1)
    d = check_int("dilation", dilation, 1)
    return np.bincount((np.arange(k) * d) % s, minlength=s)


# -- the zero-insertion view -----------------------------------------------------------
ZeroInsertionSteps = namedtuple("ZeroInsertionSteps", "inserted padded flipped_kernel output")


def _pad_or_crop(z: np.ndarray, before, after) -> np.ndarray:
    """Pad with zeros (positive amounts) or crop (negative amounts), per side, per axis."""
    out_shape = [n + b + a for n, b, a in zip(z.shape, before, after)]
    out = np.zeros(out_shape, dtype=z.dtype)
    src, dst = [], []
    for n, b, m in zip(z.shape, before, out_shape):
        lo, hi = max(0, -b), min(n, m - b)
        src.append(slice(lo, max(lo, hi)))
        dst.append(slice(lo + b, max(lo, hi) + b))
    out[tuple(dst)] = z[tuple(src)]
    return out


def _correlate_valid(x: np.ndarray, k: np.ndarray, dilation) -> np.ndarray:
    """Stride-1 cross-correlation without padding (what ``F.conv2d`` does), any dilation."""
    (kh, kw), (dh, dw) = k.shape, dilation
    oh, ow = x.shape[0] - dh * (kh - 1), x.shape[1] - dw * (kw - 1)
    out = np.zeros((oh, ow), dtype=np.result_type(x, k))
    for a in range(kh):
        for b in range(kw):
            out += k[a, b] * x[a * dh: a * dh + oh, b * dw: b * dw + ow]
    return out


def conv_transpose_zero_insert(y, kernel, stride=1, padding=0, output_padding=0, dilation=1,
                               return_steps=False):
    """``F.conv_transpose2d`` the long way: insert zeros, pad, convolve with the flipped kernel.

    1. insert ``s-1`` zeros between the pixels of ``y``;
    2. pad each side by ``d(k-1) - p`` zeros (crop if negative), and ``output_padding`` more
       at the bottom / right;
    3. cross-correlate (stride 1, dilation ``d``) with the kernel flipped in both axes.

    With ``return_steps=True`` returns ``ZeroInsertionSteps(inserted, padded,
    flipped_kernel, output)``, otherwise the output.
    """
    y = as_array("y", y, ndims=(2,))
    k = _kernel(kernel)
    stride, padding = check_hw("stride", stride, 1), check_hw("padding", padding, 0)
    dilation = check_hw("dilation", dilation, 1)
    op = _check_output_padding(output_padding, stride, dilation)
    conv_transpose_output_size(y.shape, k.shape, stride, padding, op, dilation)  # size checks
    inserted = np.zeros(((y.shape[0] - 1) * stride[0] + 1, (y.shape[1] - 1) * stride[1] + 1),
                        dtype=np.result_type(y, k))
    inserted[::stride[0], ::stride[1]] = y
    border = [d * (n - 1) - p for d, n, p in zip(dilation, k.shape, padding)]
    padded = _pad_or_crop(inserted, border, [b + o for b, o in zip(border, op)])
    flipped = k[::-1, ::-1].copy()
    out = _correlate_valid(padded, flipped, dilation)
    return ZeroInsertionSteps(inserted, padded, flipped, out) if return_steps else out
