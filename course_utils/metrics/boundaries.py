"""Boundary quality: the boundary F-score of label maps at a pixel tolerance.

mIoU counts pixels, and a boundary is few pixels, so a segmentation can score well in mIoU
and be ragged at every edge. The boundary F-score matches the predicted boundary against
the true one within ``tolerance_px`` pixels (Euclidean distance transform).

Two protocols, chosen by two options (the course's is the default of both):

``rule`` -- which pixels are boundary pixels:

* ``"course"``: a pixel whose right or lower neighbour has another label. One pixel thick,
  on the upper/left side of each class change, and 4-connected, so each change between two
  pixels is counted once and a tolerance of 0 px means "exactly on the same pixel". A pair
  of pixels touching void is no boundary (nobody knows the label behind void).
* ``"davis"``: DAVIS's ``seg2bmap`` (Perazzi et al., "A Benchmark Dataset and Evaluation
  Methodology for Video Object Segmentation", CVPR 2016; davis-2017,
  ``python/lib/davis/measures/f_boundary.py``; copied unchanged into Gated-SCNN's
  ``utils/f_boundary.py``, Takikawa et al., ICCV 2019, nv-tlabs/GSCNN): a pixel that differs
  from its right, lower *or lower-right* neighbour; on the last row only the right neighbour
  counts, on the last column only the lower one, the bottom-right pixel is never a boundary
  (the image's edge is no boundary). So it holds the course's boundary plus the pixels whose
  only other-label contact is diagonal (``a a / a b``: the top-left ``a``). Void follows
  Gated-SCNN's ``db_eval_boundary``, which sets void pixels to 0 in both binary masks: per
  class (``num_classes``), a void pixel counts as "not this class"; class-agnostic, void is
  a label of its own in both maps, so the edge of a void region is a boundary in both.
  This is what the papers' numbers were computed with; the course's rule is the cleaner
  one to teach (no boundary where nothing is known).

``average`` -- how images are combined:

* ``"dataset"``: match counts summed over all images, then one F (like mIoU's dataset-level
  confusion matrix): a large image with many boundary pixels weighs more.
* ``"image"``: the F of each image, then their mean, as DAVIS (``db_eval_boundary`` per
  frame, averaged) and Gated-SCNN (``eval_mask_boundary``: per class, the sum of per-image F
  over the number of images; the paper's number is then the mean over classes) report. An
  image (or, per class, an image and class) with no true and no predicted boundary
  contributes F = 1, as in DAVIS (precision = recall = 1 there); one side empty and the
  other not contributes 0.

The tolerance. DAVIS's ``bound_th`` is in pixels when >= 1 and otherwise a fraction of the
image diagonal, rounded up: :func:`davis_tolerance_px` converts it (Gated-SCNN evaluates
at 0.0005, 0.001875, 0.00375 and 0.005 of the diagonal). DAVIS matches by dilating each
boundary with ``skimage.morphology.disk(r)`` (offsets with ``dx^2 + dy^2 <= r^2``), the
course with a Euclidean distance transform (distance ``<= r``). For an integer radius the
two are the same set: squared distances between pixels are integers, so ``d <= r`` exactly
when ``d^2 <= r^2``, a distance exactly at the tolerance included by both. They differ only
for a non-integer radius, where ``disk`` builds its grid as ``arange(-r, r + 1)``, off the
integer pixel offsets (a ``bound_th`` below 1 is rounded up to an integer, so only a
``bound_th`` >= 1 that is not an integer meets this); the course's distance stays exact.

Two boundary maps in the course, on purpose different:

* :func:`label_boundary` (here, for *measuring*), above.
* :func:`course_utils.losses.label_edges` (for *training* Gated-SCNN's edge output and the
  dual-task loss): a pixel whose ``(2 radius + 1)``-square window holds more than one class.
  With ``radius=1`` that is a band two pixels thick straddling the change, diagonal
  neighbours included; the loss wants it because the soft version (max - min of the class
  probabilities over the same window) of a confident prediction equals it exactly.

So ``label_boundary(lab) <= label_edges(lab, radius=1)`` pixel by pixel (every pixel with a
different right or lower neighbour has two classes in its 3 x 3 window), and the edge
labels hold in addition the lower/right side of each change and the diagonal-only contacts.
With the course's rule both leave void out the same way: a pair of pixels touching void is
no boundary.
"""
from __future__ import annotations

import math

import numpy as np

from .._checks import check_choice, check_int
from ..labels import IGNORE_INDEX
from .confusion import _pair

__all__ = ["label_boundary", "boundary_counts", "f1_from_counts", "boundary_f1", "davis_tolerance_px",
           "RULES", "AVERAGES"]

RULES = ("course", "davis")
AVERAGES = ("dataset", "image")


def label_boundary(labels, void=None, rule: str = "course") -> np.ndarray:
    """Thin boundary of one ``(H, W)`` label map under ``rule`` (see the module's docstring).

    ``"course"``: pixels whose right or lower neighbour has another label; pairs that touch a
    ``void`` pixel (a boolean ``(H, W)`` mask) are no boundary. ``"davis"``: DAVIS's
    ``seg2bmap``, the right, lower or lower-right neighbour differs; ``void`` pixels are a
    label of their own.
    """
    check_choice("rule", rule, RULES)
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be one (H, W) label map, got shape {lab.shape}")
    is_void = np.zeros(lab.shape, bool) if void is None else np.asarray(void, bool)
    if is_void.shape != lab.shape:
        raise ValueError(f"void must have the labels' shape {lab.shape}, got {is_void.shape}")
    b = np.zeros(lab.shape, bool)
    if rule == "course":
        ok = ~is_void
        b[:, :-1] |= (lab[:, 1:] != lab[:, :-1]) & ok[:, 1:] & ok[:, :-1]
        b[:-1, :] |= (lab[1:, :] != lab[:-1, :]) & ok[1:, :] & ok[:-1, :]
        return b
    # Slicing leaves out the neighbours beyond the last row/column, as seg2bmap's overrides do.
    for here, there in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                        ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None)))):
        b[here] |= _differ(lab[here], is_void[here], lab[there], is_void[there])
    return b


def _differ(a, a_void, b, b_void) -> np.ndarray:
    """Labels differ, void being a label of its own (whatever value a void pixel holds)."""
    return (a_void != b_void) | (~a_void & ~b_void & (a != b))


def davis_tolerance_px(bound_th: float, shape) -> float:
    """DAVIS's tolerance in pixels: ``bound_th`` itself when >= 1, else
    ``ceil(bound_th * diagonal)`` of an image of ``shape`` ``(H, W)`` (``db_eval_boundary``)."""
    if not bound_th >= 0:
        raise ValueError(f"bound_th must be >= 0 (pixels when >= 1, a fraction of the diagonal below), "
                         f"got {bound_th}")
    h, w = shape[-2:]
    return float(bound_th) if bound_th >= 1 else float(math.ceil(bound_th * math.hypot(h, w)))


def _matched(boundary: np.ndarray, other: np.ndarray, tolerance_px: float) -> int:
    """How many pixels of ``boundary`` lie within ``tolerance_px`` (Euclidean) of ``other``."""
    from scipy import ndimage

    n = int(boundary.sum())
    if n == 0 or not other.any():
        return 0
    dist = ndimage.distance_transform_edt(~other)   # distance to the nearest pixel of ``other``
    return int((dist[boundary] <= tolerance_px).sum())


def _class_boundaries(p, t, k, void, rule):
    """The two boundary maps of one image for class ``k`` (``None``: class-agnostic)."""
    if k is None:
        return label_boundary(p, void, rule), label_boundary(t, void, rule)
    pk, tk = p == k, t == k
    if rule == "davis" and void is not None:
        # Gated-SCNN's db_eval_boundary: foreground_mask[ignore] = 0; gt_mask[ignore] = 0.
        pk, tk, void = pk & ~void, tk & ~void, None
    return label_boundary(pk, void, rule), label_boundary(tk, void, rule)


def boundary_counts(pred, target, tolerance_px: float = 2.0, num_classes: int | None = None,
                    ignore_index: int | None = IGNORE_INDEX, rule: str = "course") -> np.ndarray:
    """Per-image boundary match counts, the sufficient statistics of :func:`boundary_f1`.

    Returns ``(N, 4)`` integers ``[matched_pred, n_pred, matched_target, n_target]``
    (class-agnostic), or ``(N, num_classes, 4)`` with ``num_classes`` (the boundaries of
    each class's binary mask). Sum them over images, then :func:`f1_from_counts` (dataset
    level), or :func:`f1_from_counts` of each image, then the mean (per image). ``rule``
    chooses the boundary pixels (``"course"`` or ``"davis"``, see the module's docstring).
    """
    pred, target = _pair(pred, target)
    if not tolerance_px >= 0:
        raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px}")
    check_choice("rule", rule, RULES)
    classes = [None] if num_classes is None else range(check_int("num_classes", num_classes, 1))
    out = np.zeros((pred.shape[0], len(classes), 4), np.int64)
    for i, (p, t) in enumerate(zip(pred, target)):
        void = (t == ignore_index) if ignore_index is not None else None
        for j, k in enumerate(classes):
            bp, bt = _class_boundaries(p, t, k, void, rule)
            out[i, j] = (_matched(bp, bt, tolerance_px), bp.sum(), _matched(bt, bp, tolerance_px), bt.sum())
    return out[:, 0] if num_classes is None else out


def f1_from_counts(counts) -> "float | np.ndarray":
    """Boundary F1 from summed :func:`boundary_counts` ``[..., 4]``.

    precision = matched_pred / n_pred, recall = matched_target / n_target; an empty side
    counts as perfect (nothing predicted: precision 1; nothing to find: recall 1), so two
    empty boundary maps score 1 and a missing boundary scores 0 (DAVIS's
    ``db_eval_boundary`` decides these cases the same way).
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim < 1 or c.shape[-1] != 4:
        raise ValueError(f"counts must end in the 4 boundary counts (..., 4), got shape {c.shape}")
    p = np.where(c[..., 1] > 0, c[..., 0] / np.maximum(c[..., 1], 1), 1.0)
    r = np.where(c[..., 3] > 0, c[..., 2] / np.maximum(c[..., 3], 1), 1.0)
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)
    return float(f) if f.ndim == 0 else f


def boundary_f1(pred, target, tolerance_px: float = 2.0, num_classes: int | None = None,
                ignore_index: int | None = IGNORE_INDEX, rule: str = "course", average: str = "dataset"):
    """Boundary F-score of label maps ``pred`` vs ``target`` (``(N, H, W)`` or ``(H, W)``).

    A predicted boundary pixel is correct (precision) when a true boundary pixel lies within
    ``tolerance_px`` pixels (Euclidean distance transform, ``scipy.ndimage``), and a true one
    is found (recall) when a predicted one lies within the tolerance. Boundaries follow
    :func:`label_boundary` under ``rule`` (``"course"``: void target pixels are skipped;
    ``"davis"``: DAVIS's ``seg2bmap`` with Gated-SCNN's void handling).

    ``average="dataset"`` sums the counts over all images before dividing (like mIoU);
    ``average="image"`` is the mean of the per-image F scores (DAVIS, Gated-SCNN), an image
    with no boundary on either side scoring 1. ``rule="davis", average="image"`` with
    ``num_classes`` and ``tolerance_px=davis_tolerance_px(th, shape)`` is Gated-SCNN's
    per-class F at threshold ``th``; its reported number is the mean over classes.

    Class-agnostic by default (any change of label is a boundary; returns a float). With
    ``num_classes``, per class (the boundary of each class's mask; returns an array, 1.0 for
    a class absent from both).
    """
    check_choice("average", average, AVERAGES)
    counts = boundary_counts(pred, target, tolerance_px, num_classes, ignore_index, rule)
    if average == "dataset":
        return f1_from_counts(counts.sum(0))
    f = np.asarray(f1_from_counts(counts)).mean(0)
    return float(f) if f.ndim == 0 else f
