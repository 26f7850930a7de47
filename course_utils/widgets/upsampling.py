"""Demos of notebooks 00 and 01: interpolating a 1-D signal, upsampling a photo."""
from __future__ import annotations

from functools import lru_cache

import ipywidgets as widgets
import numpy as np

from .. import upsampling as up
from ..images import block_mean, load_sample_image
from ..plotting import IMAGE_CMAP, MATRIX_CMAP
from .base import Demo, ValueBar, register, show_array

METHOD_LABELS = {
    "nearest": "nearest",
    "bilinear": "bilinear",
    "bicubic": "bicubic",
    "zero-insert + kernel": "zero_insert",
}


class SignalDemo(Demo):
    """A smooth 1-D signal, sampled, then rebuilt by nearest / linear / cubic interpolation."""

    def __init__(self):
        controls = {
            "samples": widgets.IntSlider(value=8, min=4, max=16, description="samples"),
            "method": widgets.Dropdown(options=["nearest", "bilinear", "bicubic"], value="bilinear",
                                       description="method"),
        }
        super().__init__(controls, figsize=(7.2, 2.6))

    def build(self, fig):
        ax = fig.add_subplot()
        self.t = np.linspace(0, 1, 400)
        ax.plot(self.t, self._truth(self.t), color="0.7", lw=2, label="true signal")
        (self.rebuilt,) = ax.plot([], [], color="C3", lw=1.5, label="interpolated")
        (self.dots,) = ax.plot([], [], "o", color="k", ms=4, label="samples")
        ax.set_xlim(0, 1)
        ax.set_ylim(-1.6, 1.6)
        # Outside the axes, right of the plot: every sample count puts samples and peaks in
        # every corner of the axes, so any legend inside would hide some.
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False,
                  fontsize=10)
        self.ax = ax
        ax.set_title("samples")               # a stand-in, so the layout leaves room for the title
        fig.tight_layout()

    @staticmethod
    def _truth(t):
        return np.sin(2 * np.pi * 1.5 * t) + 0.4 * np.sin(2 * np.pi * 4 * t)

    def update(self, samples, method):
        # Sample centres sit at (i + 0.5)/n, the same half-pixel convention as interpolate().
        ts = (np.arange(samples) + 0.5) / samples
        xs = self._truth(ts)
        factor = 25
        ys = up.resampling_matrix(samples, factor, method) @ xs
        tu = (np.arange(samples * factor) + 0.5) / (samples * factor)
        self.rebuilt.set_data(tu, ys)
        self.dots.set_data(ts, xs)
        self.ax.set_title(f"{samples} samples, {method} interpolation")


@register("signal")
def signal_demo() -> SignalDemo:
    """Notebook 00's first widget: move a slider, the figure answers."""
    return SignalDemo()


@lru_cache(maxsize=1)
def _face_crop() -> np.ndarray:
    img = load_sample_image("grace_hopper", gray=True)
    return img[110:278, 176:344].copy()  # 168 x 168 around the face; 168 = 8 * 21


class UpsamplingDemo(Demo):
    """Downsample a photo by ``factor``, upsample it back with the chosen method."""

    def __init__(self):
        controls = {
            "factor": widgets.IntSlider(value=4, min=2, max=8, description="factor"),
            "method": widgets.Dropdown(options=list(METHOD_LABELS), value="zero-insert + kernel",
                                       description="method"),
            "show_kernel": widgets.Checkbox(value=True, description="show kernel"),
            "show_grid": widgets.Checkbox(value=False, description="zero-inserted grid"),
        }
        super().__init__(controls, figsize=(8.4, 3.35))

    def build(self, fig):
        self.axes = fig.subplots(1, 3)
        self.original = _face_crop()
        blank = np.zeros((2, 2))
        self.left = self.axes[0].imshow(blank, cmap=IMAGE_CMAP, vmin=0, vmax=1)
        self.middle = self.axes[1].imshow(blank, cmap=IMAGE_CMAP, vmin=0, vmax=1)
        self.right = self.axes[2].imshow(blank, cmap=MATRIX_CMAP, vmin=-1, vmax=1)
        for ax in self.axes:
            ax.set_xticks([])
            ax.set_yticks([])
        height = fig.get_figheight()
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.42 / height, top=1 - 0.36 / height, wspace=0.08)
        x0, _, w, _ = self.axes[2].get_position().bounds
        # The kernel's colours are weights on the fixed scale [-1, 1] (bicubic dips below 0).
        self.kernel_bar = ValueBar(fig, (x0 + 0.25 * w, 0.2 / height, 0.5 * w, 0.09 / height), MATRIX_CMAP,
                                   "kernel weight")
        self.kernel_bar.set_limits("-1", "1")

    def update(self, factor, method, show_kernel, show_grid):
        low = block_mean(self.original, factor)
        out = np.clip(up.interpolate(low, factor, METHOD_LABELS[method]), 0, 1)
        if show_grid:
            # A zoom, so the inserted zeros are visible as gaps rather than a grey haze.
            zoom = up.zero_insert(low, factor)[48:96, 48:96]
            show_array(self.axes[0], self.left, zoom)
            self.axes[0].set_title("zeros inserted (zoom)")
        else:
            show_array(self.axes[0], self.left, low)
            self.axes[0].set_title(f"input {low.shape[0]}x{low.shape[1]}")
        show_array(self.axes[1], self.middle, out)
        self.axes[1].set_title(f"{method}, x{factor}")
        self.axes[2].set_visible(show_kernel)
        self.kernel_bar.set_visible(show_kernel)
        if show_kernel:
            if METHOD_LABELS[method] == "zero_insert":
                kernel = up.bilinear_kernel(factor)
            else:
                _, k1 = up.interpolation_kernel_1d(METHOD_LABELS[method], factor)
                kernel = np.outer(k1, k1)
            show_array(self.axes[2], self.right, kernel)
            self.axes[2].set_title(f"kernel {kernel.shape[0]}x{kernel.shape[1]}")


@register("upsampling")
def upsampling_demo() -> UpsamplingDemo:
    """Notebook 01's instructor widget: factor, method, kernel and zero-grid toggles."""
    return UpsamplingDemo()
