"""Is a difference real? Paired-bootstrap confidence intervals over the test images.

"How do you know which model is best? Bold font." A difference of two scores measured on
one test set is a claim about that set; :func:`paired_bootstrap` puts an interval on it by
resampling the test images (the same images for both models), and
:func:`significant_best` sets a model in bold only when every interval says so.

What the interval covers: which images happened to be in the test set, for fixed weights.
It does not cover the spread from training the same recipe again with another seed
(see ``tools/seed_variance.py`` and notebook 08).

The metrics of resampled sums come from :mod:`.confusion` (the one IoU formula) and
:mod:`.boundaries` (boundary F from counts).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._checks import check_int
from ..labels import IGNORE_INDEX
from .confusion import ConfusionMatrix, _pair, miou_of_matrix

__all__ = ["per_image_confusion", "BootstrapResult", "paired_bootstrap", "Winner", "significant_best"]


def per_image_confusion(preds, targets, num_classes: int, ignore_index: int | None = IGNORE_INDEX) -> np.ndarray:
    """``(N, C, C)`` confusion matrices, one per image, for :func:`paired_bootstrap`."""
    preds, targets = _pair(preds, targets)
    return np.stack([ConfusionMatrix(num_classes, ignore_index).update(p, t).matrix
                     for p, t in zip(preds, targets)])


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
    """``difference`` = metric(A) - metric(B) on all images; ``low, high``: its CI."""
    difference: float
    low: float
    high: float
    confidence: float
    n_resamples: int

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def _resolve_metric(a: np.ndarray, metric):
    """``metric``, or the default one for statistics shaped like ``a`` (see :func:`paired_bootstrap`)."""
    if metric is not None:
        return metric
    if a.ndim == 3 and a.shape[1] == a.shape[2]:
        return miou_of_matrix
    if a.ndim == 1:
        n = a.shape[0]
        return lambda s: float(s) / n   # the sum of N per-image scores -> their mean
    raise ValueError(f"pass metric for statistics of shape {a.shape} (e.g. f1_from_counts for (N, 4))")


def paired_bootstrap(stats_a, stats_b, n_resamples: int = 1000, seed: int = 0, metric=None,
                     confidence: float = 0.95) -> BootstrapResult:
    """Percentile bootstrap CI of ``metric(A) - metric(B)`` over the same validation images.

    ``stats_a`` and ``stats_b`` hold one entry per image, in the same order: ``(N, C, C)``
    per-image confusion matrices (:func:`per_image_confusion`; default metric mIoU),
    ``(N, 4)`` boundary counts (:func:`boundary_counts`; metric :func:`f1_from_counts`), or
    ``(N,)`` per-image scores (default metric the mean). Each resample draws N images with
    replacement, *the same images for both models* (pairing removes the variation that
    comes from which images happen to be hard), sums their statistics and applies
    ``metric`` to the sums: a dataset-level mIoU of the resampled set, not a mean of
    per-image mIoUs. Deterministic in ``seed``.
    """
    a, b = np.asarray(stats_a), np.asarray(stats_b)
    if a.shape != b.shape or a.ndim < 1 or a.shape[0] < 1:
        raise ValueError(f"stats_a {a.shape} and stats_b {b.shape} must have the same shape (N, ...), N >= 1")
    n_resamples = check_int("n_resamples", n_resamples, 1, 10**7)
    seed = check_int("seed", seed, 0)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    metric = _resolve_metric(a, metric)
    rng = np.random.default_rng(seed)
    n = a.shape[0]
    diffs = np.empty(n_resamples)
    for i in range(n_resamples):
        idx = rng.integers(0, n, n)
        diffs[i] = metric(a[idx].sum(0)) - metric(b[idx].sum(0))
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(diffs, [alpha, 1 - alpha])
    return BootstrapResult(float(metric(a.sum(0)) - metric(b.sum(0))), float(low), float(high), confidence,
                           n_resamples)


@dataclasses.dataclass(frozen=True)
class Winner:
    """:func:`significant_best`'s answer: ``candidate`` has the best point estimate;
    ``best`` is that name only if every CI of ``candidate - other`` excludes zero, else None."""
    candidate: str
    best: str | None
    scores: dict
    versus: dict


def significant_best(stats: dict, metric=None, n_resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95, higher_is_better: bool = True) -> Winner:
    """Which model may be printed in bold: the best one *only if* the data say so.

    ``stats`` maps model names to per-image statistics, as :func:`paired_bootstrap` takes
    them (same images, same order; ``metric`` as there). The candidate is the model with
    the best dataset-level score; it is declared ``best`` only when the paired-bootstrap CI
    of its difference to every other model lies entirely on its side of zero. Otherwise
    ``best`` is None: the data cannot separate the leaders, and no model earns the bold font.
    """
    if len(stats) < 2:
        raise ValueError(f"stats must hold at least two models, got {len(stats)}")
    arrays = {name: np.asarray(v) for name, v in stats.items()}
    names = list(arrays)
    shape = arrays[names[0]].shape
    for name, arr in arrays.items():
        if arr.shape != shape or arr.ndim < 1 or shape[0] < 1:
            raise ValueError(f"stats[{name!r}] has shape {arr.shape}, stats[{names[0]!r}] {shape}: every model "
                             "needs statistics (N, ...) of the same N >= 1 images")
    metric = _resolve_metric(arrays[names[0]], metric)
    scores = {name: float(metric(arr.sum(0))) for name, arr in arrays.items()}
    sign = 1.0 if higher_is_better else -1.0
    ranked = [n for n in names if not math.isnan(scores[n])]
    if not ranked:
        raise ValueError("the metric is NaN for every model")
    candidate = max(ranked, key=lambda n: sign * scores[n])
    versus = {other: paired_bootstrap(arrays[candidate], arrays[other], n_resamples, seed, metric, confidence)
              for other in names if other != candidate}
    clear = all((r.low > 0) if higher_is_better else (r.high < 0) for r in versus.values())
    return Winner(candidate, candidate if clear else None, scores, versus)
