"""Notebook 04's instructor demo: build a stack of up to three layers, see its field.

Left: a photo with the receptive field of the centre output unit outlined and the input
pixels that unit actually samples coloured by their number of paths (holes stay
uncoloured: gridding). Right: every layer's units at their positions in input pixels,
the ones that feed that output coloured. A line in the figure and the message line read
out size, jump and the number of holes.
"""
from __future__ import annotations

from functools import lru_cache

import ipywidgets as widgets
import numpy as np
from matplotlib import colormaps
from matplotlib.patches import Rectangle

from .. import receptive_field as rfm
from ..images import block_mean, load_sample_image
from ..plotting import IMAGE_CMAP
from .base import Demo, ValueBar, register

MAX_LAYERS = 3
CANVAS = 48  # input pixels shown; the largest field the controls allow is 39

# One dropdown per layer: (label, (kernel_size, stride, dilation)). Six choices and a
# layer count keep the sweep at 3 * 6**3 = 648 combinations.
LAYER_CHOICES = [
    ("3x3, dilation 1", (3, 1, 1)),
    ("3x3, dilation 2", (3, 1, 2)),
    ("3x3, dilation 3", (3, 1, 3)),
    ("3x3, dilation 4", (3, 1, 4)),
    ("3x3, stride 2", (3, 2, 1)),
    ("2x2 pool, stride 2", (2, 2, 1)),
]
DEFAULTS = ((3, 1, 1), (3, 1, 2), (3, 1, 4))


@lru_cache(maxsize=1)
def _photo() -> np.ndarray:
    img = load_sample_image("grace_hopper", gray=True)
    return block_mean(img[100:292, 164:356], 4)  # the face, 48 x 48


class ReceptiveFieldDemo(Demo):
    """Stack builder: number of layers and each layer's kernel / stride / dilation."""

    def __init__(self):
        controls = {"layers": widgets.IntSlider(value=3, min=1, max=MAX_LAYERS, description="layers")}
        for i, default in enumerate(DEFAULTS, start=1):
            controls[f"layer{i}"] = widgets.Dropdown(options=LAYER_CHOICES, value=default,
                                                     description=f"layer {i}",
                                                     layout=widgets.Layout(width="230px"))
        #: the last stack's field, sampled-position map and number of holes (for notebooks)
        self.field: rfm.ReceptiveField | None = None
        self.counts: np.ndarray | None = None
        self.holes: int | None = None
        super().__init__(controls, figsize=(7.6, 3.6))

    def build(self, fig):
        self.ax_img, self.ax_net = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
        ax = self.ax_img
        ax.imshow(_photo(), cmap=IMAGE_CMAP, vmin=0, vmax=1)
        self.overlay = ax.imshow(np.zeros((CANVAS, CANVAS, 4)), interpolation="nearest")
        self.box = Rectangle((0, 0), 1, 1, fill=False, edgecolor="yellow", linewidth=1.5)
        ax.add_patch(self.box)
        (self.centre,) = ax.plot([], [], "+", color="cyan", ms=9, mew=1.5)
        ax.set_xticks([])
        ax.set_yticks([])
        self.cmap = colormaps["autumn_r"]

        ax = self.ax_net
        self.all_units = ax.scatter([], [], s=12, color="0.82", marker="s", linewidths=0)
        self.used_units = ax.scatter([], [], s=22, c=[], cmap="autumn_r", marker="s", linewidths=0,
                                     vmin=0, vmax=1)
        self.span = Rectangle((0, -0.45), 1, 0.9, facecolor="yellow", alpha=0.3, edgecolor="none")
        ax.add_patch(self.span)
        ax.set_xlim(-7.5, CANVAS - 0.5)
        ax.set_ylim(-0.6, MAX_LAYERS + 0.6)
        # Text is what a redraw pays for (tick machinery, titles): a few plain labels and
        # one readout line instead of ticks and titles keep a change under 50 ms.
        ax.set_axis_off()
        self.level_labels = [ax.text(-7, level, "input" if level == 0 else f"layer {level}", fontsize=8,
                                     va="center") for level in range(MAX_LAYERS + 1)]
        self.readout = fig.text(0.02, 1 - 0.1 / fig.get_figheight(), "", fontsize=10, va="top")
        height = fig.get_figheight()
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.42 / height, top=1 - 0.45 / height, wspace=0.08)
        x0, _, w, _ = self.ax_img.get_position().bounds
        # Colour = number of paths from a pixel to the output unit, relative to the most.
        self.path_bar = ValueBar(fig, (x0 + 0.2 * w, 0.2 / height, 0.6 * w, 0.09 / height), self.cmap,
                                 "paths to the output unit")

    def update(self, layers, layer1, layer2, layer3):
        stack = [layer1, layer2, layer3][:layers]
        field = rfm.receptive_field(stack)
        counts = rfm.path_counts(stack)
        lo = (CANVAS - field.size) // 2  # first input pixel of the field on the canvas

        # Left: sampled pixels coloured by path count, holes left uncoloured.
        used = counts > 0
        rgba = np.zeros((CANVAS, CANVAS, 4))
        block = self.cmap(np.outer(counts, counts) / counts.max() ** 2)
        block[..., 3] = np.where(np.outer(used, used), 0.7, 0.0)
        rgba[lo:lo + field.size, lo:lo + field.size] = block
        self.overlay.set_data(rgba)
        self.box.set_bounds(lo - 0.5, lo - 0.5, field.size, field.size)
        mid = lo + (field.size - 1) / 2
        self.centre.set_data([mid], [mid])

        # Right: for each layer, its unit centres near the field and the ones the output uses.
        grid_x, grid_y, use_x, use_y, use_c = [], [], [], [], []
        sizes = [1] + [h.size for h in field.history]
        jumps = [1] + [h.jump for h in field.history]
        for level in range(layers + 1):
            above = rfm.path_counts(stack[level:])       # in units of this level
            first = lo + (sizes[level] - 1) / 2          # centre of the leftmost used unit
            step = jumps[level]
            n_left = int(np.floor((first + 0.5) / step))
            xs = first + step * np.arange(-n_left, int((CANVAS - 0.5 - first) // step) + 1)
            grid_x.append(xs)
            grid_y.append(np.full(len(xs), level))
            mine = first + step * np.flatnonzero(above)
            use_x.append(mine)
            use_y.append(np.full(len(mine), level))
            use_c.append(above[above > 0] / above.max())
        self.all_units.set_offsets(np.column_stack([np.concatenate(grid_x), np.concatenate(grid_y)]))
        self.used_units.set_offsets(np.column_stack([np.concatenate(use_x), np.concatenate(use_y)]))
        self.used_units.set_array(np.concatenate(use_c))
        self.path_bar.set_limits("0", str(int(counts.max()) ** 2))
        self.span.set_bounds(lo - 0.5, -0.45, field.size, 0.9)

        self.field, self.counts = field, np.outer(counts, counts)
        self.holes = int(field.size ** 2 - np.count_nonzero(self.counts))
        self.readout.set_text(f"field {field.size}x{field.size}, jump {field.stride}, holes {self.holes}")
        for level, label in enumerate(self.level_labels):
            label.set_color("black" if level <= layers else "0.8")
        schedule = ", ".join(f"k{k} s{s} d{d}" for k, s, d in stack)
        holes = "no holes" if self.holes == 0 else f"{self.holes} holes (gridding)"
        return (f"{schedule}: receptive field {field.size} x {field.size} px, jump {field.stride} px; "
                f"{field.size ** 2 - self.holes} of {field.size ** 2} pixels sampled, {holes}")


@register("receptive_field")
def receptive_field_demo() -> ReceptiveFieldDemo:
    """Notebook 04's instructor widget: a stack builder showing field, jump and holes."""
    return ReceptiveFieldDemo()
