"""Segmentation metrics from a dataset-level confusion matrix.

The lecture's mIoU: for each class, the area of overlap between prediction and ground
truth divided by the area of their union, then the mean over classes. "Area" is summed
over the *whole* validation set before dividing: averaging per-image (or per-batch) IoUs
instead weights a tiny pole in one image like a whole road in another and gives a
different, batch-size-dependent number. So :class:`ConfusionMatrix` only accumulates
pixel counts; every metric is computed from the counts at the end.

The IoU formula is written once, in :func:`iou_of_matrix`; the matrix class, the mIoU of a
bare matrix (for the bootstrap's resampled sums) and one class's IoU all call it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_int
from ..labels import IGNORE_INDEX, as_label_batch, check_label_range


def predicted_labels(logits: torch.Tensor) -> torch.Tensor:
    """The class of each pixel, ``(N, H, W)`` int64, from logits ``(N, C, H, W)``.

    The same as ``logits.argmax(1)`` (ties go to the lowest class in both), but
    ``max(1).indices`` is about ten times faster for NCHW tensors on CPU in torch 2.x:
    argmax over a non-innermost dimension takes a slow generic path.
    """
    return logits.max(1).indices


class ConfusionMatrix:
    """Pixel counts ``matrix[t, p]``: pixels of true class ``t`` predicted as class ``p``.

    ``update(pred, target)`` adds a batch; ``pred`` is either logits / scores
    ``(N, C, H, W)`` (or ``(C, H, W)`` for one image; the argmax over ``C`` is taken) or
    integer labels of the same shape as ``target`` (``(N, H, W)`` or ``(H, W)``); torch
    tensors (any device) or NumPy arrays. Target pixels equal to ``ignore_index``
    (:data:`course_utils.labels.IGNORE_INDEX`, "void" in Pascal VOC and Cityscapes) are skipped.
    Matrices from several workers or processes add up: ``a + b``, ``a.merge(b)``, or
    :meth:`all_reduce` under ``torch.distributed``.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX):
        self.num_classes = check_int("num_classes", num_classes, 1, 65535)
        if ignore_index is not None:
            ignore_index = check_int("ignore_index", ignore_index)
            if 0 <= ignore_index < self.num_classes:
                raise ValueError(f"ignore_index must lie outside the classes [0, {self.num_classes}), "
                                 f"got {ignore_index}")
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    # -- accumulating ---------------------------------------------------------------------
    def update(self, pred, target) -> "ConfusionMatrix":
        """Add the pixels of one batch; returns ``self``."""
        pred, target = _as_tensor("pred", pred), _as_tensor("target", target)
        if target.ndim not in (2, 3):
            raise ValueError(f"target must be labels (N, H, W) or (H, W), got shape {tuple(target.shape)}")
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ValueError(f"target must hold integer class labels, got dtype {target.dtype}")
        if pred.is_floating_point():
            if pred.ndim != target.ndim + 1:
                raise ValueError(
                    f"pred is floating point, so it must be scores (N, C, H, W) (or (C, H, W)) for "
                    f"target {tuple(target.shape)}, got shape {tuple(pred.shape)}; pass integer labels "
                    "for a label map")
            channel_axis = pred.ndim - 3
            if pred.shape[channel_axis] != self.num_classes:
                raise ValueError(f"pred has {pred.shape[channel_axis]} score channels but num_classes is "
                                 f"{self.num_classes}")
            pred = pred.argmax(dim=channel_axis)
        elif pred.is_complex() or pred.dtype == torch.bool:
            raise ValueError(f"pred must be integer labels or float scores, got dtype {pred.dtype}")
        if pred.shape != target.shape:
            raise ValueError(f"pred labels {tuple(pred.shape)} and target {tuple(target.shape)} must have "
                             "the same shape")
        pred = pred.to(target.device).long().reshape(-1)
        target = target.long().reshape(-1)

        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        c = self.num_classes
        check_label_range("target", target, c, self.ignore_index)
        check_label_range("pred", pred, c, None)
        counts = torch.bincount(target * c + pred, minlength=c * c)
        self.matrix += counts.reshape(c, c).cpu().numpy()
        return self

    def reset(self) -> "ConfusionMatrix":
        self.matrix[:] = 0
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add ``other``'s counts into this matrix (in place); returns ``self``."""
        self._check_compatible(other)
        self.matrix += other.matrix
        return self

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return self.copy().merge(other)

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return self.merge(other)

    def copy(self) -> "ConfusionMatrix":
        new = ConfusionMatrix(self.num_classes, self.ignore_index)
        new.matrix[:] = self.matrix
        return new

    def all_reduce(self, group=None, device=None) -> "ConfusionMatrix":
        """Sum the matrices of all processes of a ``torch.distributed`` group, in place.

        A no-op when ``torch.distributed`` is not initialised, so evaluation code can call
        it unconditionally. NCCL only reduces CUDA tensors, so with that backend the counts
        travel through the current CUDA device unless ``device`` says otherwise.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        if device is None:
            device = (torch.device("cuda", torch.cuda.current_device())
                      if dist.get_backend(group) == "nccl" else torch.device("cpu"))
        counts = torch.as_tensor(self.matrix, dtype=torch.int64, device=device)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM, group=group)
        self.matrix[:] = counts.cpu().numpy()
        return self

    def _check_compatible(self, other) -> None:
        if not isinstance(other, ConfusionMatrix):
            raise ValueError(f"other must be a ConfusionMatrix, got {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix (ignore_index "
                             f"{other.ignore_index}) into a {self.num_classes}-class one (ignore_index "
                             f"{self.ignore_index})")

    # -- metrics --------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def intersection(self) -> np.ndarray:
        return np.diag(self.matrix).copy()

    def union(self) -> np.ndarray:
        return _union(self.matrix)

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both prediction and target."""
        return iou_of_matrix(self.matrix)

    def miou(self) -> float:
        """Mean IoU over the classes that occur (NaN-mean); NaN if no pixel was counted."""
        return _nanmean(self.iou())

    def pixel_accuracy(self) -> float:
        """Fraction of counted pixels whose predicted class is right; NaN if none counted."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else math.nan

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall: correct pixels / true pixels of the class (NaN if none)."""
        support = self.matrix.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(support > 0, np.diag(self.matrix) / np.maximum(support, 1), np.nan)

    def table(self, class_names=None, digits: int = 1) -> str:
        """A per-class text table: IoU and class accuracy in percent, true and predicted pixel
        shares; "n/a" where a class never occurs. The last line is the mean."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"class_names must have {self.num_classes} entries, got {len(names)}")
        total = max(self.total, 1)
        width = max([len(n) for n in names] + [5])
        header = f"{'class':<{width}} {'IoU %':>7} {'acc %':>7} {'true %':>7} {'pred %':>7}"
        lines = [header, "-" * len(header)]
        iou, acc = self.iou(), self.class_accuracy()
        true_share, pred_share = self.matrix.sum(1) / total, self.matrix.sum(0) / total

        def pct(v):
            return f"{'n/a':>7}" if math.isnan(v) else f"{100 * v:>7.{digits}f}"

        for i, name in enumerate(names):
            lines.append(f"{name:<{width}} {pct(iou[i])} {pct(acc[i])} {pct(true_share[i])} {pct(pred_share[i])}")
        lines.append("-" * len(header))
        lines.append(f"{'mean':<{width}} {pct(self.miou())} {pct(_nanmean(acc))}"
                     f"   pixel accuracy {pct(self.pixel_accuracy()).strip()} %")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
                f"pixels={self.total})")


def _union(m: np.ndarray) -> np.ndarray:
    """Per class: pixels predicted as it + pixels truly of it - pixels both (the overlap)."""
    return m.sum(0) + m.sum(1) - np.diag(m)


def iou_of_matrix(matrix) -> np.ndarray:
    """Per-class IoU of a confusion matrix ``matrix[t, p]``: ``diag / (column + row - diag)``.

    NaN for a class absent from both prediction and target (its union is empty). The one
    place the course writes this formula.
    """
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix must be a square (C, C) confusion matrix, got shape {m.shape}")
    union = _union(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, np.diag(m) / np.maximum(union, 1), np.nan)


def miou_of_matrix(matrix) -> float:
    """mIoU of a confusion matrix (NaN-mean over classes present in prediction or target)."""
    return _nanmean(iou_of_matrix(matrix))


def class_iou_of_matrix(k: int):
    """A metric for :func:`~course_utils.metrics.paired_bootstrap`: the IoU of class ``k``."""
    k = check_int("k", k, 0)

    def iou(matrix):
        m = np.asarray(matrix)
        if k >= m.shape[0]:
            raise ValueError(f"k must be a class of the {m.shape[0]}-class matrix, got {k}")
        return float(iou_of_matrix(m)[k])
    iou.__name__ = f"class_{k}_iou"
    return iou


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _as_tensor(name: str, x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold numbers, got dtype {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ValueError(f"{name} must be a torch.Tensor or a NumPy array, got {type(x).__name__}")


def _pair(pred, target):
    pred, target = as_label_batch("pred", pred), as_label_batch("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
    return pred, target
