"""Demos of notebook 03: the convolution matrix C and its transpose; checkerboard artifacts."""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from .. import conv_matrix as cm
from ..plotting import MATRIX_CMAP, POSITIVE_CMAP, format_number, symmetric_limit
from .base import Demo, ValueBar, register, show_array

BAR_INCHES = 0.42  # room under the panels for the colour bars


def _show(ax, artist, arr, limit=None) -> float:
    """``arr`` in ``artist`` on the diverging scale centred on zero (limit: its own max)."""
    limit = symmetric_limit(arr) if limit is None else limit
    show_array(ax, artist, arr, clim=(-limit, limit))
    return limit


def _bars_under(fig, groups, cmaps=None):
    """One :class:`ValueBar` centred under each group of axes (an axes or a list of them)."""
    bars = []
    height = fig.get_figheight()
    for i, group in enumerate(groups):
        group = group if isinstance(group, (list, tuple)) else [group]
        x0 = min(a.get_position().x0 for a in group)
        x1 = max(a.get_position().x1 for a in group)
        width = min(0.55 * (x1 - x0), 0.22)
        rect = ((x0 + x1 - width) / 2, 0.2 / height, width, 0.09 / height)
        bars.append(ValueBar(fig, rect, cmaps[i] if cmaps else MATRIX_CMAP))
    return bars


def _slider(cls, **options):
    # Redraw on release only: each redraw takes tens of milliseconds.
    return cls(continuous_update=False, style={"description_width": "initial"},
               layout=widgets.Layout(width="190px"), **options)


def _blank_axes(fig, n, width_ratios):
    axes = fig.subplots(1, n, gridspec_kw={"width_ratios": width_ratios})
    artists = []
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        artists.append(ax.imshow(np.zeros((2, 2)), cmap=MATRIX_CMAP, vmin=-1, vmax=1,
                                 interpolation="nearest"))
    return axes, artists


class ConvMatrixDemo(Demo):
    """Input x, the matrix C of the convolution, y = Cx, and C^T y back on the input grid."""

    def __init__(self):
        controls = {
            "input_size": _slider(widgets.IntSlider, value=4, min=3, max=8, description="input size"),
            "kernel_size": _slider(widgets.IntSlider, value=3, min=1, max=5, description="kernel"),
            "stride": _slider(widgets.IntSlider, value=1, min=1, max=3, description="stride"),
            "padding": _slider(widgets.IntSlider, value=0, min=0, max=2, description="padding"),
            "dilation": _slider(widgets.IntSlider, value=1, min=1, max=3, description="dilation"),
        }
        super().__init__(controls, figsize=(8.4, 2.9 + BAR_INCHES))

    def build(self, fig):
        self.axes, self.artists = _blank_axes(fig, 4, [1, 2.4, 1, 1])
        self.axes[1].set_aspect("auto")
        height = fig.get_figheight()
        fig.subplots_adjust(left=0.04, right=0.96, bottom=(BAR_INCHES + 0.1) / height,
                            top=1 - 0.4 / height, wspace=0.2)
        # Each panel has its own scale (x, C, y and C^T y are different quantities): a bar each.
        self.bars = _bars_under(fig, self.axes)
        # A fixed input per size, so moving a slider changes only what the slider controls.
        self.inputs = {n: np.random.default_rng(n).integers(-3, 4, size=(n, n)).astype(float)
                       for n in range(1, 17)}

    def update(self, input_size, kernel_size, stride, padding, dilation):
        n, k = input_size, kernel_size
        # Distinct positive taps: each diagonal band of C shows which tap it is.
        kernel = np.arange(1.0, k * k + 1).reshape(k, k)
        c = cm.conv2d_matrix(kernel, (n, n), stride, padding, dilation)
        m = cm.conv_output_size(n, k, stride, padding, dilation)
        x = self.inputs[n]
        y = (c @ x.ravel()).reshape(m, m)
        back = (c.T @ y.ravel()).reshape(n, n)
        panels = [(x, f"x: {n}x{n}"), (c, f"C: {m * m}x{n * n}"), (y, f"y = Cx: {m}x{m}"),
                  (back, f"$C^T y$: {n}x{n}")]
        for ax, artist, bar, (arr, title) in zip(self.axes, self.artists, self.bars, panels):
            limit = _show(ax, artist, arr)
            bar.set_limits(format_number(-limit), format_number(limit))
            ax.set_title(title)
        self.axes[1].set_aspect("auto")
        op = cm.matching_output_padding(n, k, stride, padding, dilation)
        return (f"C has one row per output pixel ({m * m}) and one column per input pixel ({n * n}); "
                f"conv_transpose2d needs output_padding={op} to give back a {n}x{n} grid. "
                f"C\u1d40y has x's shape, not x's values.")


@register("conv_matrix")
def conv_matrix_demo() -> ConvMatrixDemo:
    """Notebook 03's conv-matrix explorer: input size, kernel, stride, padding, dilation."""
    return ConvMatrixDemo()


# -- checkerboard ---------------------------------------------------------------------------
WINDOW = 24  # output pixels shown per side (at least two periods of the pattern are shown)


def _stack_kernels(kernel_size: int, stride: int, layers: int, weights: str) -> list[np.ndarray]:
    """One kernel per layer, scaled to sum to ``stride**2`` so a constant keeps its mean."""
    out = []
    for layer in range(layers):
        if weights == "all ones":
            k = np.ones((kernel_size, kernel_size))
        else:
            # Seeded by the configuration: the same sliders always show the same picture.
            rng = np.random.default_rng(1000 * kernel_size + 100 * stride + layer)
            k = rng.uniform(0.2, 1.0, size=(kernel_size, kernel_size))
        out.append(k * stride**2 / k.sum())
    return out


def transposed_stack(kernels, stride: int, input_size: int) -> np.ndarray:
    """A stack of stride-``s`` transposed convolutions applied to a constant input.

    NumPy (the zero-insertion form, tested equal to ``F.conv_transpose2d``) rather than
    torch: on these small grids torch's thread pool costs more than the arithmetic when
    the machine is busy.
    """
    x = np.ones((input_size, input_size))
    for k in kernels:
        x = cm.conv_transpose_zero_insert(x, k, stride=stride)
    return x


def resize_conv_stack(kernels, stride: int, input_size: int) -> np.ndarray:
    """The alternative: nearest-neighbour resize by ``s``, then a stride-1 convolution."""
    x = np.ones((input_size, input_size))
    for k in kernels:
        x = np.repeat(np.repeat(x, stride, axis=0), stride, axis=1)
        kk = k.shape[0]
        # Replicate padding: the borders see the same constant, so only the kernel speaks.
        x = np.pad(x, ((kk - 1) // 2, kk // 2), mode="edge")
        x = cm.conv_transpose_zero_insert(x, k[::-1, ::-1] / stride**2, padding=kk - 1)
    return x


def interior(kernel_size: int, stride: int, layers: int, input_size: int) -> tuple[int, int]:
    """First and last output pixel that no border reaches, after ``layers`` transposed convs.

    Output ``o`` is reached from inputs ``(o - a)/s`` for taps ``a < k``: it is interior
    when all of those are interior, so the interval maps ``[lo, hi] -> [lo*s + k-1, hi*s]``.
    """
    lo, hi = 0, input_size - 1
    for _ in range(layers):
        lo, hi = lo * stride + kernel_size - 1, hi * stride
    return lo, hi


class CheckerboardDemo(Demo):
    """Overlap counts of one transposed conv, and what a stack of them does to a constant."""

    def __init__(self):
        controls = {
            "kernel_size": _slider(widgets.IntSlider, value=3, min=1, max=6, description="kernel"),
            "stride": _slider(widgets.IntSlider, value=2, min=1, max=3, description="stride"),
            "layers": _slider(widgets.IntSlider, value=2, min=1, max=3, description="layers"),
            "weights": widgets.Dropdown(options=["all ones", "random"], value="all ones",
                                        description="weights", layout=widgets.Layout(width="190px")),
        }
        super().__init__(controls, figsize=(8.4, 3.0 + BAR_INCHES))

    def build(self, fig):
        self.axes, self.artists = _blank_axes(fig, 3, [1, 1, 1])
        self.artists[0].set_cmap(POSITIVE_CMAP)
        height = fig.get_figheight()
        fig.subplots_adjust(left=0.01, right=0.99, bottom=(BAR_INCHES + 0.1) / height,
                            top=1 - 0.4 / height, wspace=0.08)
        # Taps get their own bar; the two stacks are compared, so they share one scale.
        self.count_bar, self.deviation_bar = _bars_under(fig, [self.axes[0], list(self.axes[1:])],
                                                         [POSITIVE_CMAP, MATRIX_CMAP])
        self.count_bar.label.set_text("taps")
        self.deviation_bar.label.set_text("deviation from the mean (both panels)")

    def update(self, kernel_size, stride, layers, weights):
        k, s = kernel_size, stride
        counts = cm.overlap_count((k, k), (s, s), input_size=4)
        top = max(int(counts.max()), 1)
        show_array(self.axes[0], self.artists[0], counts.astype(float), clim=(0, top))
        self.count_bar.set_limits("0", str(top))
        self.axes[0].set_title(f"taps per pixel, 1 layer: {counts.min()}..{counts.max()}")

        # Enough input that the shown window is clear of every border effect.
        want = max(WINDOW, 2 * s**layers)
        lo_needed, _ = interior(k, s, layers, 1)
        n0 = -(-(want - 1 + lo_needed) // s**layers) + 1
        kernels = _stack_kernels(k, s, layers, weights)
        lo, hi = interior(k, s, layers, n0)
        size = min(want, hi - lo + 1)
        start = lo + (hi - lo + 1 - size) // 2
        transposed = transposed_stack(kernels, s, n0)[start: start + size, start: start + size]
        # Replicate padding leaves resize + conv without borders: a small input suffices.
        resized = resize_conv_stack(kernels, s, -(-size // s**layers))[:size, :size]
        deviations = [crop / crop.mean() - 1.0 for crop in (transposed, resized)]
        limit = max(max(float(np.abs(d).max()) for d in deviations), 0.05)
        for ax, artist, deviation, name in zip(self.axes[1:], self.artists[1:], deviations,
                                               ("transposed conv", "resize + conv")):
            _show(ax, artist, deviation, limit=limit)
            ax.set_title(f"{name} x{layers}: \u00b1{100 * float(np.abs(deviation).max()):.0f}%")
        self.deviation_bar.set_limits(f"-{100 * limit:.0f}%", f"+{100 * limit:.0f}%")

        period = cm.overlap_period(k, s)
        if period.min() == 0:
            note = f"kernel {k} < stride {s}: some output pixels get no tap at all (holes)."
        elif period.min() != period.max():
            note = (f"kernel {k} is not a multiple of stride {s}: interior pixels get "
                    f"{period.min()} or {period.max()} taps, a pattern of period {s} per layer.")
        else:
            note = (f"kernel {k} is a multiple of stride {s}: every interior pixel gets {period[0]} "
                    f"taps; a uniform kernel is then flat (random weights can still make a pattern).")
        return note + " Right: the relative deviation from the mean on a constant input."


@register("checkerboard")
def checkerboard_demo() -> CheckerboardDemo:
    """Notebook 03's checkerboard explorer: kernel size, stride, number of layers, weights."""
    return CheckerboardDemo()
