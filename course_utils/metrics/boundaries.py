"""Boundary quality: the boundary F-score of label maps at a pixel tolerance.

mIoU counts pixels, and a boundary is few pixels, so a segmentation can score well in mIoU
and be ragged at every edge. The boundary F-score matches the predicted boundary against
the true one within ``tolerance_px`` pixels (Euclidean distance transform).

Two boundary maps in the course, on purpose different:

* :func:`label_boundary` (here, for *measuring*): a pixel whose right or lower neighbour
  has another label. One pixel thick, on the upper/left side of each class change, and
  4-connected, so each change between two pixels is counted once and a tolerance of 0 px
  means "exactly on the same pixel".
* :func:`course_utils.losses.label_edges` (for *training* Gated-SCNN's edge output and the
  dual-task loss): a pixel whose ``(2 radius + 1)``-square window holds more than one class.
  With ``radius=1`` that is a band two pixels thick straddling the change, diagonal
  neighbours included; the loss wants it because the soft version (max - min of the class
  probabilities over the same window) of a confident prediction equals it exactly.

So ``label_boundary(lab) <= label_edges(lab, radius=1)`` pixel by pixel (every pixel with a
different right or lower neighbour has two classes in its 3 x 3 window), and the edge
labels hold in addition the lower/right side of each change and the diagonal-only contacts.
Both leave void out the same way: a pair of pixels touching void is no boundary.
"""
from __future__ import annotations

import numpy as np

from .._checks import check_int
from ..labels import IGNORE_INDEX
from .confusion import _pair

__all__ = ["label_boundary", "boundary_counts", "f1_from_counts", "boundary_f1"]


def label_boundary(labels, void=None) -> np.ndarray:
    """Thin boundary of one ``(H, W)`` label map: pixels whose right or lower neighbour has
    another label (one pixel thick, on the upper/left side of each class change). Pairs that
    touch a ``void`` pixel (a boolean ``(H, W)`` mask) are no boundary."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be one (H, W) label map, got shape {lab.shape}")
    ok = np.ones(lab.shape, bool) if void is None else ~np.asarray(void, bool)
    if ok.shape != lab.shape:
        raise ValueError(f"void must have the labels' shape {lab.shape}, got {ok.shape}")
    b = np.zeros(lab.shape, bool)
    b[:, :-1] |= (lab[:, 1:] != lab[:, :-1]) & ok[:, 1:] & ok[:, :-1]
    b[:-1, :] |= (lab[1:, :] != lab[:-1, :]) & ok[1:, :] & ok[:-1, :]
    return b


def _matched(boundary: np.ndarray, other: np.ndarray, tolerance_px: float) -> int:
    """How many pixels of ``boundary`` lie within ``tolerance_px`` (Euclidean) of ``other``."""
    from scipy import ndimage

    n = int(boundary.sum())
    if n == 0 or not other.any():
        return 0
    dist = ndimage.distance_transform_edt(~other)   # distance to the nearest pixel of ``other``
    return int((dist[boundary] <= tolerance_px).sum())


def boundary_counts(pred, target, tolerance_px: float = 2.0, num_classes: int | None = None,
                    ignore_index: int | None = IGNORE_INDEX) -> np.ndarray:
    """Per-image boundary match counts, the sufficient statistics of :func:`boundary_f1`.

    Returns ``(N, 4)`` integers ``[matched_pred, n_pred, matched_target, n_target]``
    (class-agnostic), or ``(N, num_classes, 4)`` with ``num_classes`` (the boundaries of
    each class's binary mask). Sum them over images, then :func:`f1_from_counts`.
    """
    pred, target = _pair(pred, target)
    if not tolerance_px >= 0:
        raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px}")
    classes = [None] if num_classes is None else range(check_int("num_classes", num_classes, 1))
    out = np.zeros((pred.shape[0], len(classes), 4), np.int64)
    for i, (p, t) in enumerate(zip(pred, target)):
        void = (t == ignore_index) if ignore_index is not None else None
        for j, k in enumerate(classes):
            bp = label_boundary(p if k is None else p == k, void)
            bt = label_boundary(t if k is None else t == k, void)
            out[i, j] = (_matched(bp, bt, tolerance_px), bp.sum(), _matched(bt, bp, tolerance_px), bt.sum())
    return out[:, 0] if num_classes is None else out


def f1_from_counts(counts) -> "float | np.ndarray":
    """Boundary F1 from summed :func:`boundary_counts` ``[..., 4]``.

    precision = matched_pred / n_pred, recall = matched_target / n_target; an empty side
    counts as perfect (nothing predicted: precision 1; nothing to find: recall 1), so two
    empty boundary maps score 1 and a missing boundary scores 0.
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim < 1 or c.shape[-1] != 4:
        raise ValueError(f"counts must end in the 4 boundary counts (..., 4), got shape {c.shape}")
    p = np.where(c[..., 1] > 0, c[..., 0] / np.maximum(c[..., 1], 1), 1.0)
    r = np.where(c[..., 3] > 0, c[..., 2] / np.maximum(c[..., 3], 1), 1.0)
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)
    return float(f) if f.ndim == 0 else f


def boundary_f1(pred, target, tolerance_px: float = 2.0, num_classes: int | None = None,
                ignore_index: int | None = IGNORE_INDEX):
    """Boundary F-score of label maps ``pred`` vs ``target`` (``(N, H, W)`` or ``(H, W)``).

    A predicted boundary pixel is correct (precision) when a true boundary pixel lies within
    ``tolerance_px`` pixels (Euclidean distance transform, ``scipy.ndimage``), and a true one
    is found (recall) when a predicted one lies within the tolerance. Counts are summed over
    all images before dividing (dataset level, like mIoU). Boundaries follow
    :func:`label_boundary`; those touching void target pixels are skipped.

    Class-agnostic by default (any change of label is a boundary; returns a float). With
    ``num_classes``, per class (the boundary of each class's mask; returns an array, 1.0 for
    a class absent from both).
    """
    return f1_from_counts(boundary_counts(pred, target, tolerance_px, num_classes, ignore_index).sum(0))
