"""Notebook 02's demo: max pooling with switches, then unpooling (max, bed of nails, nearest)."""
from __future__ import annotations

from functools import lru_cache

import ipywidgets as widgets
import numpy as np
from matplotlib.collections import LineCollection

from .. import pooling as pl
from ..images import block_mean, load_sample_image
from ..plotting import IMAGE_CMAP, MATRIX_CMAP, format_number
from .base import Demo, register, show_array

INPUTS = ("the lecture's 4x4", "random digits 6x6", "image patch 24x24")
UNPOOLINGS = ("max (switches)", "bed of nails", "nearest")
MAX_NUMBERS = 64  # grids reach 8x8 (6x6 digits pooled to 2x2 at stride 4, unpooled x4); the photo has none
# Digits in cells: the font follows the cell (45 % of its side) but never below this many
# points, legible projected; a grid whose cells are too small for it shows no digits and
# the message line says so.
MIN_FONT, MAX_FONT = 7.0, 11.0


@lru_cache(maxsize=1)
def _inputs() -> dict[str, np.ndarray]:
    # Digits 0-9 so that windows tie often and the tie rule is visible.
    digits = np.random.default_rng(2).integers(0, 10, (6, 6)).astype(float)
    # Grace Hopper's face (glasses, nose, mouth) averaged down to 24x24: still recognisable.
    face = block_mean(load_sample_image("grace_hopper", gray=True)[140:260, 190:310], 5)
    return dict(zip(INPUTS, (pl.LECTURE_X, digits, face.astype(float))))


class _Panel:
    """One axes: an image, a pool of number labels, switch markers and window outlines."""

    def __init__(self, ax):
        self.ax = ax
        self.image = ax.imshow(np.zeros((2, 2)), cmap=MATRIX_CMAP, vmin=-1, vmax=1)
        self.texts = [ax.text(0, 0, "", ha="center", va="center", visible=False)
                      for _ in range(MAX_NUMBERS)]
        (self.switches,) = ax.plot([], [], "s", fillstyle="none", markeredgewidth=2.0, color="black")
        self.windows = ax.add_collection(LineCollection([], colors="0.3", linewidths=1.2,
                                                        linestyles="--"))
        ax.set_xticks([])
        ax.set_yticks([])

    def show(self, arr, vmax: float, image: bool, title: str, cell_points: float,
             blank_zeros: bool = False) -> bool:
        """Draw ``arr``; False when its digits were left out because the cells are too small."""
        h, w = arr.shape
        show_array(self.ax, self.image, arr, clim=(0, 1) if image else (-vmax, vmax))
        self.image.set_cmap(IMAGE_CMAP if image else MATRIX_CMAP)
        self.ax.set_title(title)
        fontsize = min(MAX_FONT, 0.45 * cell_points)
        legible = fontsize >= MIN_FONT and arr.size <= MAX_NUMBERS
        shown = not image and legible
        for k, text in enumerate(self.texts):
            r, c = divmod(k, w)
            if not shown or k >= arr.size or (blank_zeros and arr[r, c] == 0):
                text.set_visible(False)
                continue
            v = arr[r, c]
            text.set_position((c, r))
            text.set_text(format_number(v))
            text.set_fontsize(fontsize)
            text.set_color("white" if abs(v) > 0.6 * vmax else "black")
            text.set_visible(True)
        return image or legible

    def mark(self, positions, cell_points: float, image: bool = False):
        # Outlined squares around numbers; on a photo, small dots that leave it visible.
        rows, cols = positions
        self.switches.set_data(cols, rows)
        self.switches.set_marker("o" if image else "s")
        self.switches.set_fillstyle("full" if image else "none")
        self.switches.set_markersize((0.35 if image else 0.8) * cell_points)
        self.switches.set_color("orange" if image else "black")


class UnpoolingDemo(Demo):
    """Pool an input with its switches remembered, then unpool the pooled values."""

    def __init__(self):
        controls = {
            "input": widgets.Dropdown(options=INPUTS, value=INPUTS[0], description="input"),
            "pool_size": widgets.IntSlider(value=2, min=1, max=5, description="pool size"),
            "stride": widgets.IntSlider(value=2, min=1, max=4, description="stride"),
            "unpooling": widgets.Dropdown(options=UNPOOLINGS, value=UNPOOLINGS[0], description="unpool"),
        }
        super().__init__(controls, figsize=(8.4, 3.1))

    def build(self, fig):
        axes = fig.subplots(1, 3)
        self.panels = [_Panel(ax) for ax in axes]
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86, wspace=0.08)
        # Axes are square boxes of this many points; a cell is that divided by the grid size.
        self._box_points = axes[0].get_position().width * fig.get_figwidth() * 72
        #: what the figure shows, for notebooks and tests: pooled, indices, unpooled.
        self.state: dict = {}

    def update(self, input, pool_size, stride, unpooling):
        x = _inputs()[input]
        image = input == INPUTS[2]
        if pool_size > min(x.shape):
            raise ValueError(f"pool size {pool_size} is larger than the {x.shape[0]}x{x.shape[1]} "
                             f"input: a window must fit inside the input (kernel_size <= {min(x.shape)}).")
        pooled, idx = pl.max_pool2d_with_indices(x, pool_size, stride)
        # The slides' own setting: the decoder hands back [[1, 2], [3, 4]], not the maxima.
        slide = input == INPUTS[0] and pool_size == 2 and stride == 2
        decoded = pl.LECTURE_DECODED if slide else pooled
        of = " of 1 2 / 3 4" if slide else ""
        if unpooling == UNPOOLINGS[0]:
            out = pl.max_unpool2d(decoded, idx, x.shape)
            how = f"max unpooling{of}"
        elif unpooling == UNPOOLINGS[1]:
            out = pl.unpool_bed_of_nails(decoded, stride)
            how = f"bed of nails{of} x{stride}"
        else:
            out = pl.unpool_nearest(decoded, stride)
            how = f"nearest{of} x{stride}"
        self.state = {"x": x, "pooled": pooled, "indices": idx, "decoded": decoded, "unpooled": out}

        switches = np.unravel_index(np.unique(idx), x.shape)
        cell = self._box_points / max(x.shape)
        # One colour scale for all three panels: the same value has the same colour.
        vmax = max(float(np.abs(x).max()), 1e-12)
        inp, mid, right = self.panels
        legible = inp.show(x, vmax, image, f"input {x.shape[0]}x{x.shape[1]}, switches", cell)
        inp.mark(switches, cell, image)
        inp.windows.set_segments(self._window_outlines(x.shape, pool_size, stride, only_first=image))

        legible &= mid.show(pooled, vmax, image, f"max-pooled {pooled.shape[0]}x{pooled.shape[1]}",
                            self._box_points / max(pooled.shape))
        mid.mark(([], []), 1.0)

        cell_out = self._box_points / max(out.shape)
        # Unpooled grids are mostly zeros: beyond the lecture's 4x4, white cells say 0 by
        # themselves, and skipping their labels keeps the redraw fast.
        legible &= right.show(out, vmax, image, f"{how}: {out.shape[0]}x{out.shape[1]}", cell_out,
                              blank_zeros=out.size > 16)
        # On a photo the bright dots of the max-unpooled image are the switches already.
        right.mark(switches if unpooling == UNPOOLINGS[0] and not image else ([], []), cell_out)

        overlap = stride < pool_size
        kept = len(switches[0])
        note = (f"{pooled.size} windows, {kept} distinct switches out of {x.size} pixels; "
                f"ties go to the first maximum in row-major order.")
        if slide and unpooling == UNPOOLINGS[0]:
            note = ("The lecture's example: the maxima 5 6 / 7 8 leave their switches behind; the "
                    "decoder's 1 2 / 3 4 is written back at them. " + note)
        if not legible:
            note += " Cells too small for legible digits: numbers hidden."
        if overlap:
            note += " Windows overlap (stride < pool size): neighbours can share a switch."
        elif stride > pool_size:
            note += " Stride > pool size: some pixels are in no window."
        return note

    @staticmethod
    def _window_outlines(shape, k, s, only_first=False):
        oh, ow = pl.pooled_shape(shape, k, s)
        # Overlapping outlines would hide the grid: then only the first window is drawn.
        origins = [(0, 0)] if s < k or only_first else [(i * s, j * s) for i in range(oh) for j in range(ow)]
        segments = []
        for r, c in origins:
            top, left, bottom, right = r - 0.5, c - 0.5, r + k - 0.5, c + k - 0.5
            segments.append([(left, top), (right, top), (right, bottom), (left, bottom), (left, top)])
        return segments


@register("unpooling")
def unpooling_demo() -> UnpoolingDemo:
    """Notebook 02's instructor widget: input, pool size, stride and the unpooling method."""
    return UnpoolingDemo()
