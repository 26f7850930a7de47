"""Integer upsampling, the way the lecture builds it: insert zeros, then convolve.

Conventions (shared with notebook 01 and its tests):

* ``zero_insert(x, f)`` makes an ``(f*H, f*W)`` grid with the original samples at
  ``[::f, ::f]`` and zeros elsewhere, as in the lecture's 4x4 -> 8x8 example.
* ``upsample_zero_insert`` convolves that grid with a kernel (default: the bilinear
  kernel of the factor), so inside the sample grid it matches
  ``F.interpolate(..., align_corners=True)``; past the last sample there is only one
  neighbour, which is the edge effect the ``edge`` option fixes.
* ``interpolate(x, f, method)`` resamples with the half-pixel convention of
  ``F.interpolate(..., align_corners=False)`` (nearest, bilinear, bicubic), written as
  one sparse resampling matrix per axis: upsampling is linear, ``y = R_h x R_w^T``.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.ndimage
import scipy.signal
import scipy.sparse

from ._checks import as_array, check_choice, check_int

METHODS = ("nearest", "bilinear", "bicubic", "zero_insert")
EDGES = ("zero", "normalize", "replicate")
MAX_FACTOR = 64

# PyTorch's (and OpenCV's) bicubic uses a = -0.75; Keys (1981) derives a = -0.5 as the
# value that makes the interpolant third-order accurate. We follow PyTorch so the two agree.
BICUBIC_A = -0.75


def _check_factor(factor) -> int:
    return check_int("factor", factor, 1, MAX_FACTOR)


def zero_insert(x, factor: int) -> np.ndarray:
    """Place ``x`` (2-D) on every ``factor``-th row and column of a zero grid ``(f*H, f*W)``."""
    x = as_array("x", x, ndims=(2,))
    factor = _check_factor(factor)
    out = np.zeros((x.shape[0] * factor, x.shape[1] * factor), dtype=np.result_type(x, np.float32))
    out[::factor, ::factor] = x
    return out


def bilinear_kernel_1d(factor: int) -> np.ndarray:
    """The triangle ``1 - |t|/f`` for ``t = -(f-1) .. f-1``: ``2f-1`` taps, peak 1."""
    factor = _check_factor(factor)
    t = np.arange(-(factor - 1), factor)
    return 1.0 - np.abs(t) / factor


def bilinear_kernel(factor: int) -> np.ndarray:
    """The 2-D bilinear kernel: the outer product of two triangles, ``(2f-1, 2f-1)``.

    ``bilinear_kernel(2)`` is the lecture's ``[[.25,.5,.25],[.5,1,.5],[.25,.5,.25]]``.
    """
    k = bilinear_kernel_1d(factor)
    return np.outer(k, k)


def kernel_function(method: str):
    """The continuous 1-D interpolation kernel ``k(t)`` (``t`` in input-pixel units)."""
    check_choice("method", method, ("nearest", "bilinear", "bicubic"))
    if method == "nearest":
        return lambda t: ((t >= -0.5) & (t < 0.5)).astype(float)
    if method == "bilinear":
        return lambda t: np.clip(1.0 - np.abs(t), 0.0, None)
    return _keys_cubic


def _keys_cubic(t, a: float = BICUBIC_A):
    t = np.abs(np.asarray(t, dtype=float))
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def interpolation_kernel_1d(method: str, factor: int):
    """The 1-D kernel of ``method`` sampled at spacing ``1/factor``: ``(t, weights)``.

    These are the taps a zero-insert-then-convolve upsampler would use; the bilinear
    one equals :func:`bilinear_kernel_1d`.
    """
    factor = _check_factor(factor)
    radius = {"nearest": 0.5, "bilinear": 1.0, "bicubic": 2.0}[check_choice(
        "method", method, ("nearest", "bilinear", "bicubic"))]
    n = math.ceil(radius * factor)
    t = np.arange(-n, n + 1) / factor
    w = kernel_function(method)(t)
    keep = w != 0
    return t[keep], w[keep]


def upsample_zero_insert(x, factor: int, kernel=None, edge: str = "zero") -> np.ndarray:
    """Upsample 2-D ``x`` by inserting zeros and convolving with ``kernel``.

    ``kernel`` defaults to :func:`bilinear_kernel`; it must have odd height and width (so
    it has a centre, which keeps the original samples at ``[::f, ::f]``).
    ``edge``: ``"zero"`` pads with zeros (the lecture's version: the last ``f-1`` rows and
    columns fade towards zero); ``"normalize"`` divides by the kernel weight that landed on
    real samples; ``"replicate"`` repeats the border samples before inserting zeros.
    """
    x = as_array("x", x, ndims=(2,))
    factor = _check_factor(factor)
    check_choice("edge", edge, EDGES)
    kernel = bilinear_kernel(factor) if kernel is None else as_array("kernel", kernel, ndims=(2,))
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must have odd height and width (a centre tap), got shape {kernel.shape}")

    if edge == "replicate":
        # Enough extra samples that the kernel never reaches past them.
        ph = math.ceil((kernel.shape[0] // 2) / factor)
        pw = math.ceil((kernel.shape[1] // 2) / factor)
        padded = np.pad(x, ((ph, ph), (pw, pw)), mode="edge")
        y = _convolve_same(zero_insert(padded, factor), kernel)
        return y[ph * factor: (ph + x.shape[0]) * factor, pw * factor: (pw + x.shape[1]) * factor]

    y = _convolve_same(zero_insert(x, factor), kernel)
    if edge == "normalize":
        coverage = _convolve_same(zero_insert(np.ones_like(x), factor), kernel)
        y = y / np.where(coverage == 0, 1.0, coverage)
    return y


def _convolve_same(z: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """True convolution (kernel flipped), zero padding, output the size of ``z``.

    A rank-1 kernel (bilinear, any outer product) runs as two 1-D passes, which is what
    keeps the widget fast at factor 8; anything else goes through a 2-D convolution.
    """
    # Factor through the largest tap: for the bilinear kernel this gives the triangle
    # exactly (no SVD rounding), so the lecture's numbers come out exact.
    r, c = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
    peak = kernel[r, c]
    if peak != 0:
        col, row = kernel[:, c], kernel[r, :] / peak
        if np.allclose(np.outer(col, row), kernel, rtol=0, atol=1e-14 * abs(peak)):
            # convolve1d flips and centres an odd filter: the same as convolve2d "same".
            y = scipy.ndimage.convolve1d(z, col, axis=0, mode="constant")
            return scipy.ndimage.convolve1d(y, row, axis=1, mode="constant")
    return scipy.signal.convolve2d(z, kernel, mode="same", boundary="fill")


def resampling_matrix(n_in: int, factor: int, method: str) -> scipy.sparse.csr_matrix:
    """The ``(factor*n_in, n_in)`` matrix ``R`` with ``y = R @ x`` for a 1-D signal.

    Output pixel ``i`` sits at input coordinate ``u = (i + 0.5)/f - 0.5`` (pixel centres,
    PyTorch's ``align_corners=False``); its weights are ``k(u - j)`` for the neighbouring
    samples ``j``; samples past the border are the border sample (indices clamped).
    """
    n_in = check_int("n_in", n_in, 1)
    factor = _check_factor(factor)
    check_choice("method", method, ("nearest", "bilinear", "bicubic"))
    k = kernel_function(method)
    n_out = n_in * factor
    u = (np.arange(n_out) + 0.5) / factor - 0.5
    base = np.floor(u).astype(int)
    taps = {"nearest": (0, 1), "bilinear": (0, 1), "bicubic": (-1, 0, 1, 2)}[method]
    rows, cols, vals = [], [], []
    for o in taps:
        j = base + o
        rows.append(np.arange(n_out))
        cols.append(np.clip(j, 0, n_in - 1))
        vals.append(k(u - j))
    # Duplicate (row, col) pairs from clamping are summed by the sparse constructor.
    return scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_out, n_in))


def interpolate(x, factor: int, method: str = "bilinear") -> np.ndarray:
    """Upsample a 2-D array or an ``(H, W, C)`` image by an integer ``factor``.

    ``method``: ``"nearest"``, ``"bilinear"``, ``"bicubic"`` (half-pixel convention, as
    ``F.interpolate(..., align_corners=False)``), or ``"zero_insert"`` (the lecture's
    zero insertion + bilinear kernel, edges normalised).
    """
    x = as_array("x", x, ndims=(2, 3))
    factor = _check_factor(factor)
    check_choice("method", method, METHODS)
    if method == "zero_insert":
        if x.ndim == 2:
            return upsample_zero_insert(x, factor, edge="normalize")
        return np.stack([upsample_zero_insert(x[..., c], factor, edge="normalize")
                         for c in range(x.shape[2])], axis=-1)
    rh = resampling_matrix(x.shape[0], factor, method)
    rw = resampling_matrix(x.shape[1], factor, method)
    flat = x.reshape(x.shape[0], -1)                      # (H, W*C)
    y = (rh @ flat).reshape(rh.shape[0], x.shape[1], -1)  # rows resampled
    y = np.moveaxis(y, 1, 0).reshape(x.shape[1], -1)      # (W, H'*C)
    y = (rw @ y).reshape(rw.shape[0], rh.shape[0], -1)    # columns resampled
    y = np.moveaxis(y, 0, 1)
    return y[..., 0] if x.ndim == 2 else y
