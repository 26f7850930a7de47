"""From a semantic map towards instances: connected components, boxes, box matching.

Semantic segmentation gives one class per pixel, so two touching cars are one blob of
"car". The closest a semantic map gets to instances is the connected components of a
class (4-connected: pixels sharing an edge), and a box per component; matching predicted
boxes to true ones one to one at box IoU >= 0.5 (the usual detection criterion) counts how
many objects were found. Components are not instances (touching objects merge, an
occluder splits one), which is why instance segmentation needs models of its own.
"""
from __future__ import annotations

from .._checks import check_int
from ..labels import as_label_batch

__all__ = ["class_components", "box_iou", "match_boxes", "component_match_counts"]


def class_components(labels, k: int) -> tuple:
    """4-connected components of class ``k`` in one ``(H, W)`` label map.

    Returns ``(components, boxes)``: an int map with 0 off the class and ``1..n`` on its
    components (``scipy.ndimage.label``), and per component its box
    ``(top, bottom, left, right)``, bottom and right exclusive, in component order.
    """
    from scipy import ndimage

    lab = as_label_batch("labels", labels)
    if lab.shape[0] != 1:
        raise ValueError(f"labels must be one (H, W) label map, got {lab.shape[0]} maps")
    k = check_int("k", k, 0)
    components, _ = ndimage.label(lab[0] == k)
    boxes = [(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in ndimage.find_objects(components)]
    return components, boxes


def box_iou(a, b) -> float:
    """IoU of two boxes ``(top, bottom, left, right)`` (bottom, right exclusive), in pixels."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[2], b[2]))
    area_a, area_b = (a[1] - a[0]) * (a[3] - a[2]), (b[1] - b[0]) * (b[3] - b[2])
    if area_a <= 0 or area_b <= 0:
        raise ValueError(f"boxes must have positive area, got {tuple(a)} and {tuple(b)}")
    return inter / (area_a + area_b - inter)


def match_boxes(true_boxes, pred_boxes, threshold: float = 0.5) -> list:
    """Greedy one-to-one matching by box IoU: pairs ``(i_true, j_pred)`` with IoU >= ``threshold``.

    Candidate pairs are taken in order of decreasing IoU (ties: lower indices first), and a
    pair is kept when neither box is matched yet, as detection benchmarks do.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    pairs = sorted(((box_iou(t, p), i, j) for i, t in enumerate(true_boxes) for j, p in enumerate(pred_boxes)),
                   key=lambda x: (-x[0], x[1], x[2]))
    used_t, used_p, matched = set(), set(), []
    for iou, i, j in pairs:
        if iou >= threshold and i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
            matched.append((i, j))
    return matched


def component_match_counts(preds, targets, k: int, threshold: float = 0.5) -> tuple:
    """``(n_true, n_pred, n_matched)`` components of class ``k`` summed over images.

    Precision of the components is ``n_matched / n_pred``, recall ``n_matched / n_true``.
    """
    preds, targets = as_label_batch("preds", preds), as_label_batch("targets", targets)
    if preds.shape != targets.shape:
        raise ValueError(f"preds {preds.shape} and targets {targets.shape} must have the same shape")
    n_true = n_pred = n_match = 0
    for p, t in zip(preds, targets):
        tb, pb = class_components(t, k)[1], class_components(p, k)[1]
        n_true, n_pred, n_match = n_true + len(tb), n_pred + len(pb), n_match + len(match_boxes(tb, pb, threshold))
    return n_true, n_pred, n_match
