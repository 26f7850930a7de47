"""Max pooling that remembers where each maximum was, and the unpoolings that use it.

Conventions (shared with notebook 02 and its tests):

* Windows are ``kernel_size`` x ``kernel_size`` (or ``(kh, kw)``) and start every
  ``stride`` pixels (default: ``stride = kernel_size``, non-overlapping), without padding.
  Only whole windows count, so an ``H``-row input gives ``floor((H - kh) / sh) + 1`` rows,
  as PyTorch's default ``ceil_mode=False``; rows and columns past the last whole window
  are never looked at. ``stride < kernel_size`` gives overlapping windows.
* The switches (``indices``) are flat indices into the pooled input: pixel ``(r, c)`` of
  an ``H x W`` input is ``r * W + c``. That is what ``F.max_pool2d(...,
  return_indices=True)`` returns for one channel, and ``np.unravel_index(i, (H, W))``
  turns one back into ``(r, c)``.
* Ties: the first maximum in row-major scan order of the window (top row first, left to
  right) is the switch. PyTorch's CPU kernel does the same, as if it moved its running
  maximum only on a strictly larger value; the tests check this on integer inputs drawn
  from a tiny range, where most windows tie.
* NaN is refused: a window holding NaN has no maximum. (PyTorch's CPU kernel lets NaN
  win and, with several NaNs, stores the last one's index: a rule not worth teaching.)
* :func:`max_unpool2d` writes each value at its switch into zeros. When overlapping
  windows share a switch, the pooled cell that comes last in row-major order wins.
  PyTorch documents that case as nondeterministic (``nn.MaxUnpool2d``'s note, pytorch
  issue 80827); it only matters when the values sharing a switch differ, never when the
  pooled values themselves are unpooled. Nothing is summed: summing is the gradient of
  max pooling, a different operation.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._checks import as_array, check_hw, check_int

# The lecture's worked example (slides "Max Pooling" and "Max Unpooling"): the 4x4 input
# pooled 2x2 with stride 2, the 2x2 map the "rest of the network" returns, and the 4x4
# that max unpooling makes of it with the pooling's switches. Typed from the slides.
LECTURE_X = np.array([[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]], dtype=float)
LECTURE_DECODED = np.array([[1, 2], [3, 4]], dtype=float)
LECTURE_UNPOOLED = np.array([[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]], dtype=float)


def _plane(name: str, x) -> np.ndarray:
    x = as_array(name, x, ndims=(2,))
    if x.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(f"{name} must not contain NaN (a window holding NaN has no maximum)")
    return x


def pooled_shape(input_shape, kernel_size=2, stride=None) -> tuple[int, int]:
    """The output shape of pooling an ``input_shape`` array (whole windows only)."""
    h, w = check_hw("input_shape", input_shape, 1)
    kh, kw = check_hw("kernel_size", kernel_size, 1)
    sh, sw = (kh, kw) if stride is None else check_hw("stride", stride, 1)
    if kh > h or kw > w:
        raise ValueError(f"kernel_size must be at most the input size {(h, w)}, got {(kh, kw)}")
    return (h - kh) // sh + 1, (w - kw) // sw + 1


def max_pool2d_with_indices(x, kernel_size=2, stride=None):
    """Max-pool a 2-D array and return ``(pooled, indices)``.

    ``indices[i, j]`` is the flat index ``r * W + c`` into ``x`` of the maximum of window
    ``(i, j)`` (its "switch"); ties go to the first maximum in row-major order of the
    window. Matches ``F.max_pool2d(x, kernel_size, stride, return_indices=True)`` for one
    channel. ``x``: NumPy array or torch tensor ``(H, W)``; returns NumPy arrays, the
    indices as int64.
    """
    x = _plane("x", x)
    kh, kw = check_hw("kernel_size", kernel_size, 1)
    sh, sw = (kh, kw) if stride is None else check_hw("stride", stride, 1)
    oh, ow = pooled_shape(x.shape, (kh, kw), (sh, sw))

    # Every window as one row of kh*kw values in row-major order; argmax returns the
    # first maximum of that row, which is exactly PyTorch's tie rule.
    windows = sliding_window_view(x, (kh, kw))[::sh, ::sw].reshape(oh, ow, kh * kw)
    best = windows.argmax(axis=-1)
    pooled = np.take_along_axis(windows, best[..., None], axis=-1)[..., 0]
    rows = np.arange(oh)[:, None] * sh + best // kw   # window origin + offset inside it
    cols = np.arange(ow)[None, :] * sw + best % kw
    return pooled, (rows * x.shape[1] + cols).astype(np.int64)


def max_unpool2d(x, indices, output_shape) -> np.ndarray:
    """Place each value of ``x`` at its switch in a zero array of ``output_shape``.

    ``indices`` are flat indices into an array of ``output_shape`` (as returned by
    :func:`max_pool2d_with_indices` for the input of that shape), so ``output_shape``
    must be the shape of the array that was pooled: its width decodes the indices.
    Matches ``F.max_unpool2d(x, indices, kernel_size, stride, output_size=output_shape)``;
    where several cells share a switch (overlapping windows) the last in row-major order
    is kept.
    """
    x = as_array("x", x, ndims=(2,))
    if hasattr(indices, "detach"):
        indices = indices.detach().cpu().numpy()
    indices = np.asarray(indices)
    if indices.shape != x.shape:
        raise ValueError(f"indices must have the shape of x {x.shape}, got {indices.shape}")
    if indices.size and indices.dtype.kind not in "iu":
        raise ValueError(f"indices must hold integers (flat positions), got dtype {indices.dtype}")
    h, w = check_hw("output_shape", output_shape, 1)
    if h < x.shape[0] or w < x.shape[1]:
        raise ValueError(f"output_shape must be at least the shape of x {x.shape} "
                         f"(unpooling enlarges), got {(h, w)}")
    if indices.size and indices.min() < 0:
        raise ValueError(f"indices must be >= 0, got {indices.min()}")
    if indices.size and indices.max() >= h * w:
        raise ValueError(f"output_shape {(h, w)} is too small for indices: the largest index "
                         f"{indices.max()} needs H * W > {indices.max()}")

    out = np.zeros((h, w), dtype=x.dtype)
    # NumPy leaves the order of repeated fancy-index writes unspecified, so pick the
    # winner explicitly (the last pooled cell in row-major order): reproducible results.
    flat_idx, values = indices.ravel()[::-1], x.ravel()[::-1]
    positions, last = np.unique(flat_idx, return_index=True)
    out.flat[positions] = values[last]
    return out


def unpool_bed_of_nails(x, factor: int = 2) -> np.ndarray:
    """Each value at the top-left corner of its ``factor x factor`` block, zeros elsewhere.

    Max unpooling with every switch fixed at the corner; it is the zero insertion of
    notebook 01 (``course_utils.upsampling.zero_insert``).
    """
    x = as_array("x", x, ndims=(2,))
    factor = check_int("factor", factor, 1)
    out = np.zeros((x.shape[0] * factor, x.shape[1] * factor), dtype=x.dtype)
    out[::factor, ::factor] = x
    return out


def unpool_nearest(x, factor: int = 2) -> np.ndarray:
    """Each value copied into its whole ``factor x factor`` block (nearest neighbour)."""
    x = as_array("x", x, ndims=(2,))
    factor = check_int("factor", factor, 1)
    return np.repeat(np.repeat(x, factor, axis=0), factor, axis=1)


def show_switches(x, indices, ax=None, kernel_size=None, stride=None, title: str | None = None,
                  numbers: bool = True, fmt: str | None = None):
    """Draw ``x`` as a matrix with the switch cells outlined in black.

    With ``kernel_size`` (and ``stride``) the pooling windows are outlined too when they do
    not overlap. Returns the ``AxesImage``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .plotting import show_matrix

    x = as_array("x", x, ndims=(2,))
    ax = ax if ax is not None else plt.gca()
    im = show_matrix(x, ax=ax, title=title, numbers=numbers, fmt=fmt)
    if kernel_size is not None:
        kh, kw = check_hw("kernel_size", kernel_size, 1)
        sh, sw = (kh, kw) if stride is None else check_hw("stride", stride, 1)
        if sh >= kh and sw >= kw:
            oh, ow = pooled_shape(x.shape, (kh, kw), (sh, sw))
            for i in range(oh):
                for j in range(ow):
                    ax.add_patch(Rectangle((j * sw - 0.5, i * sh - 0.5), kw, kh, fill=False,
                                           edgecolor="0.35", linewidth=1.5, linestyle="--"))
    rows, cols = np.unravel_index(np.unique(np.asarray(indices)), x.shape)
    for r, c in zip(rows, cols):
        ax.add_patch(Rectangle((c - 0.45, r - 0.45), 0.9, 0.9, fill=False, edgecolor="black",
                               linewidth=2.5))
    return im
