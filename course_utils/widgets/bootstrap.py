""""Bold font" in front of a class: paired-bootstrap intervals as the test set shrinks.

The instructor slides the number of test images down from all of them to a handful and
watches the intervals widen until the leader's bold font is no longer earned (notebook 08).
"""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from .._checks import check_int
from ..metrics import significant_best
from ..zoo import LABEL
from .base import Demo, register



class BootstrapDemo(Demo):
    """Scores on the first ``n`` test images, and the CI of the leader minus every other model.

    ``stats`` maps a metric's label to ``(per_model, metric)``: ``per_model`` maps model
    names to per-image statistics (as :func:`~course_utils.metrics.paired_bootstrap` takes
    them) and ``metric`` is the function of their sum (None for the default). The answer of
    the last redraw is kept in ``winner`` (a :class:`~course_utils.metrics.Winner`).
    """

    def __init__(self, stats: dict, n_resamples: int = 200, seed: int = 0, step: int = 10):
        if not stats:
            raise ValueError("stats must hold at least one metric")
        sizes = {len(np.asarray(s)) for per_model, _ in stats.values() for s in per_model.values()}
        if len(sizes) != 1:
            raise ValueError(f"every model and metric needs statistics of the same images; got counts {sorted(sizes)}")
        n = sizes.pop()
        step = check_int("step", step, 1, n)
        self.stats, self.n_resamples, self.seed = stats, check_int("n_resamples", n_resamples, 10), seed
        self.winner = None
        controls = {
            "images": widgets.IntSlider(value=n - n % step or n, min=step, max=n - n % step or n, step=step,
                                        description="test images", continuous_update=False,
                                        style={"description_width": "initial"}),
            "metric": widgets.Dropdown(options=list(stats), description="metric"),
        }
        super().__init__(controls, figsize=(6.4, 2.6))

    def build(self, fig):
        # Artists made once and updated: clearing the axes and tight_layout per redraw cost
        # more than the bootstrap itself.
        self.ax = ax = fig.add_subplot()
        fig.subplots_adjust(left=0.33, right=0.97, top=0.88, bottom=0.2)
        n_others = len(next(iter(self.stats.values()))[0]) - 1
        self.bars = [ax.plot([0, 0], [k, k], lw=4, solid_capstyle="butt")[0] for k in range(n_others)]
        self.points = [ax.plot([0], [k], "o")[0] for k in range(n_others)]
        ax.axvline(0, color="k", lw=0.8)
        ax.set_ylim(n_others - 0.5, -0.5)
        self.title = ax.set_title("", fontsize=9)

    def update(self, images, metric):
        per_model, fn = self.stats[metric]
        w = significant_best({m: np.asarray(s)[:images] for m, s in per_model.items()}, fn,
                             self.n_resamples, self.seed)
        self.winner = w
        lead = LABEL.get(w.candidate, w.candidate)
        others = list(w.versus)
        for bar, point, other in zip(self.bars, self.points, others):
            r = w.versus[other]
            colour = "C2" if r.excludes_zero else "0.55"
            bar.set_xdata([r.low, r.high])
            point.set_xdata([r.difference])
            bar.set_color(colour)
            point.set_color(colour)
        lows = [w.versus[o].low for o in others] + [0.0]
        highs = [w.versus[o].high for o in others] + [0.0]
        pad = 0.05 * (max(highs) - min(lows) or 1.0)
        self.ax.set_xlim(min(lows) - pad, max(highs) + pad)
        self.ax.set_yticks(range(len(others)), [f"{lead} - {LABEL.get(o, o)}" for o in others], fontsize=8)
        self.ax.set_xlabel(f"{metric}: difference, 95% paired-bootstrap CI (green: excludes 0)", fontsize=8)
        verdict = f"bold earned by {lead}" if w.best else f"no bold: {lead} leads, but a CI includes 0"
        self.title.set_text(f"first {images} test images: {verdict}")
        return f"{metric} on {images} images: " + ", ".join(
            f"{LABEL.get(m, m)} {v:.3f}" for m, v in w.scores.items())


def zoo_statistics(n: int = 200, size: int = 128, seed: int = 2) -> dict:
    """:class:`BootstrapDemo` statistics of the committed zoo on ``n`` SynthCity test scenes."""
    from ..datasets import CLASSES, SynthCity
    from ..metrics import boundary_counts, class_iou_of_matrix, f1_from_counts, per_image_confusion
    from ..training import predict
    from ..zoo import load_zoo

    test = SynthCity(n, size, seed=seed)
    images, target = test.images.float() / 255, test.labels.long().numpy()
    preds = {name: predict(model, images, batch_size=50) for name, model in load_zoo().items()}
    confusion = {m: per_image_confusion(p, target, len(CLASSES)) for m, p in preds.items()}
    stats = {"mIoU": (confusion, None)}
    stats.update({f"{c} IoU": (confusion, class_iou_of_matrix(CLASSES.index(c))) for c in ("pole", "car", "road")})
    stats["boundary F@2px"] = ({m: boundary_counts(p, target, 2) for m, p in preds.items()}, f1_from_counts)
    return stats


@register("bootstrap")
def bootstrap_demo(stats: dict | None = None, n_resamples: int = 200, seed: int = 0,
                   step: int = 10) -> BootstrapDemo:
    """The "bold font" demo; without ``stats``, the zoo's models on 200 test scenes."""
    return BootstrapDemo(zoo_statistics() if stats is None else stats, n_resamples, seed, step)
