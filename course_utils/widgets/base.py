"""What every instructor demo shares: controls, a reused figure shown as a PNG, a message.

A demo subclasses :class:`Demo`, creates its axes and artists once in ``build`` and
updates them in ``update`` (``set_data``, ``set_text``): building a new figure per
change costs about four times as much. ``update`` raises ``ValueError`` for an invalid
combination of controls; the widget then shows that sentence over the last picture
instead of a traceback.

Pictures are rendered at :data:`PIXEL_DENSITY` times 72 dpi and displayed at the 72-dpi
size, so they stay sharp on high-density screens and projectors; the widget still
occupies ``figsize * 72`` CSS pixels.
"""
from __future__ import annotations

import html
import itertools
import time
from typing import Callable, Iterator

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.figure import Figure
from matplotlib.ft2font import RenderMode

from ..plotting import render_png

#: rendered pixels per displayed (CSS) pixel: 2 is what high-density screens have
PIXEL_DENSITY = 2
#: the size a figure inch takes on the page, in CSS pixels
CSS_DPI = 72

#: name -> zero-argument builder, filled by :func:`register`; the widget sweep test and
#: ``make bench`` walk it, so a new demo is tested and timed as soon as it is registered.
DEMOS: dict[str, Callable[[], "Demo"]] = {}


def register(name: str):
    def decorate(builder):
        DEMOS[name] = builder
        return builder
    return decorate


class _CachedTextRenderer(RendererAgg):
    """Agg, except that each string is rasterised once and then only stamped.

    Matplotlib 3.11's Agg renders text glyph by glyph through FreeType on every draw: at
    2x pixel density the titles and digits of a demo cost more than its images. A demo
    shows the same few strings again and again (digits, titles), so their bitmaps are
    kept, keyed by string, font and dpi; positions are rounded to whole pixels (glyphs
    within a string keep their subpixel layout). Rotated text and mathtext take the
    normal path.
    """

    def __init__(self, width, height, dpi, cache: dict):
        super().__init__(width, height, dpi)
        self._bitmaps = cache

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath or angle % 360 or not gc.get_antialiased() or mtext is None:
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        key = (s, hash(prop), self.dpi)
        entry = self._bitmaps.get(key)
        if entry is None:
            if len(self._bitmaps) > 4096:      # a bound, in case strings never repeat
                self._bitmaps.clear()
            entry = self._bitmaps[key] = self._rasterise(s, prop, mtext)
        if entry is not None:
            bitmap, left, top = entry
            # draw_text_image takes the bitmap's left and its bottom edge, y downwards.
            self._renderer.draw_text_image(bitmap, round(x) + left,
                                           round(y) - top + bitmap.shape[0], 0, gc)

    def _rasterise(self, s, prop, mtext):
        """``s`` at the origin as one alpha bitmap, with its left and top offsets (y up)."""
        font = self._prepare_font(prop)
        items = font._layout(s, flags=get_hinting_flag(), features=mtext.get_fontfeatures(),
                             language=mtext.get_language())
        size = prop.get_size_in_points()
        pieces = []
        for item in items:
            glyph_font = item.ft_object
            glyph_font.set_size(size, self.dpi)
            glyph_font._set_transform([[0x10000, 0], [0, 0x10000]],
                                      [round(0x40 * item.x), round(0x40 * item.y)])
            bitmap = glyph_font._render_glyph(item.glyph_index, get_hinting_flag(), RenderMode.NORMAL)
            buffer = np.array(bitmap.buffer, copy=True)
            if buffer.size:
                pieces.append((buffer, bitmap.left, bitmap.top))
        if not pieces:
            return None
        left = min(p[1] for p in pieces)
        top = max(p[2] for p in pieces)
        right = max(p[1] + p[0].shape[1] for p in pieces)
        bottom = min(p[2] - p[0].shape[0] for p in pieces)
        out = np.zeros((top - bottom, right - left), dtype=np.uint8)
        for buffer, gl, gt in pieces:
            view = out[top - gt: top - gt + buffer.shape[0], gl - left: gl - left + buffer.shape[1]]
            np.maximum(view, buffer, out=view)
        return out, left, top


class _DemoCanvas(FigureCanvasAgg):
    """The Agg canvas with :class:`_CachedTextRenderer`; the cache lives as long as the demo."""

    def __init__(self, figure):
        super().__init__(figure)
        self._bitmaps: dict = {}

    def get_renderer(self):
        # As FigureCanvasAgg.get_renderer, with the caching renderer.
        w, h = self.get_width_height(physical=True)
        key = (w, h, self.figure.dpi)
        if self._lastKey != key:
            self.renderer = _CachedTextRenderer(w, h, self.figure.dpi, self._bitmaps)
            self._lastKey = key
        return self.renderer


class Demo(widgets.VBox):
    """Controls on top, a message line, and the figure rendered to an image below."""

    def __init__(self, controls: dict[str, widgets.ValueWidget], figsize=(6.0, 3.0)):
        self.controls = controls
        self.figure = Figure(figsize=figsize, dpi=CSS_DPI * PIXEL_DENSITY)
        _DemoCanvas(self.figure)
        # The img element's width attribute is in CSS pixels: the browser shows the
        # PIXEL_DENSITY-times larger PNG at the 72-dpi size, using every device pixel.
        self.image = widgets.Image(format="png", width=str(round(figsize[0] * CSS_DPI)))
        self.message = widgets.HTML()
        #: the last unexpected exception (not a ValueError); tests assert it stays None.
        self.error: Exception | None = None
        box = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([box, self.message, self.image])
        self.veil = None
        self.build(self.figure)
        self.veil = self.figure.text(
            0.5, 0.5, "", ha="center", va="center", fontsize=12, wrap=True, visible=False,
            bbox=dict(boxstyle="round", facecolor="white", alpha=0.9, edgecolor="0.6"))
        for control in controls.values():
            control.observe(self._changed, names="value")
        self.refresh()

    # -- for subclasses -------------------------------------------------------------
    def build(self, fig: Figure) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, **values) -> str | None:  # pragma: no cover - abstract
        """Redraw for the controls' values; may return a sentence for the message line."""
        raise NotImplementedError

    # -- machinery ------------------------------------------------------------------
    def values(self) -> dict:
        return {name: c.value for name, c in self.controls.items()}

    def _changed(self, _change=None) -> None:
        self.refresh()

    def refresh(self) -> None:
        try:
            note = self.update(**self.values())
        except ValueError as exc:  # an invalid combination: say so, keep the last picture
            self._show_problem(str(exc))
            return
        except Exception as exc:  # a bug: still a sentence for the class, recorded for tests
            self.error = exc
            self._show_problem(f"This demo hit an internal error ({type(exc).__name__}: {exc}).")
            return
        self.error = None
        self.veil.set_visible(False)
        self.message.value = html.escape(note) if note else ""
        self.image.value = render_png(self.figure)

    def _show_problem(self, sentence: str) -> None:
        self.message.value = f'<span style="color:#b00">{html.escape(sentence)}</span>'
        self.veil.set_text(sentence)
        self.veil.set_visible(True)
        self.image.value = render_png(self.figure)


class ValueBar:
    """A colour bar for ``cmap`` on a small axes at ``rect``: one image and three texts.

    A matplotlib colorbar lays out ticks on every redraw, which costs more than the panel
    it explains; this bar only relabels its two ends (``set_limits``).
    """

    def __init__(self, fig, rect, cmap, label: str = "", fontsize: float = 8):
        self.ax = ax = fig.add_axes(rect)
        ax.imshow(np.linspace(0.0, 1.0, 256)[None, :], cmap=cmap, aspect="auto", extent=(0, 1, 0, 1),
                  interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        kw = dict(transform=ax.transAxes, va="center", fontsize=fontsize)
        self.low = ax.text(-0.03, 0.5, "", ha="right", **kw)
        self.high = ax.text(1.03, 0.5, "", ha="left", **kw)
        self.label = ax.text(0.5, -0.25, label, ha="center", va="top", transform=ax.transAxes,
                             fontsize=fontsize)

    def set_limits(self, low: str, high: str, label: str | None = None) -> None:
        self.low.set_text(low)
        self.high.set_text(high)
        if label is not None:
            self.label.set_text(label)

    def set_visible(self, visible: bool) -> None:
        self.ax.set_visible(visible)


def clipped_texts(fig) -> list[str]:
    """The visible texts of ``fig`` (titles, labels, figure texts) cut by its edges, or
    overlapping another title: what a class would see clipped. Call after a render."""
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    texts = list(fig.texts)
    titles = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if ax.title.get_visible() and ax.title.get_text():
            titles.append(ax.title)
        texts += [ax.title, *ax.texts, ax.xaxis.label, ax.yaxis.label]
    bad = []
    for t in texts:
        if not (t.get_visible() and t.get_text() and (t.axes is None or t.axes.get_visible())):
            continue
        box = t.get_window_extent(renderer)
        if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
            bad.append(t.get_text())
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in titles]
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if box_a.overlaps(box_b):
                bad.append(f"{a!r} overlaps {b!r}")
    return bad


def show_array(ax, artist, arr, clim=None) -> None:
    """Reuse the image ``artist`` of ``ax`` for ``arr`` of any shape.

    New data, extent and axis limits (and colour limits ``(low, high)`` if given): a
    demo keeps one image per panel whatever size its grids take, instead of a new
    ``imshow`` per change.
    """
    artist.set_data(arr)
    h, w = arr.shape[:2]
    artist.set_extent((-0.5, w - 0.5, h - 0.5, -0.5))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    if clim is not None:
        artist.set_clim(*clim)


# -- walking every combination of a demo's controls (tests and benchmarks) ------------
def control_positions(control) -> list:
    """The values a control can take, as ``(attribute, value)`` pairs to assign."""
    if isinstance(control, (widgets.Checkbox, widgets.ToggleButton)):
        return [("value", False), ("value", True)]
    if hasattr(control, "options"):
        return [("index", i) for i in range(len(control.options))]
    if isinstance(control, (widgets.IntSlider, widgets.BoundedIntText)):
        return [("value", v) for v in range(control.min, control.max + 1, control.step)]
    if isinstance(control, (widgets.FloatSlider, widgets.BoundedFloatText)):
        n = 5
        return [("value", control.min + (control.max - control.min) * i / (n - 1)) for i in range(n)]
    raise TypeError(f"no sweep rule for control type {type(control).__name__}")


def combinations(demo: Demo) -> Iterator[dict]:
    names = list(demo.controls)
    for combo in itertools.product(*(control_positions(demo.controls[n]) for n in names)):
        yield dict(zip(names, combo))


def sweep(demo: Demo) -> Iterator[tuple[dict, float]]:
    """Visit every combination; yield ``(values, seconds)`` for each single control change.

    Product order changes mostly one control at a time, so each timing is what an
    instructor waits for after moving one slider.
    """
    for combo in combinations(demo):
        for name, (attr, value) in combo.items():
            control = demo.controls[name]
            if getattr(control, attr) == value:
                continue
            start = time.perf_counter()
            setattr(control, attr, value)
            yield demo.values(), time.perf_counter() - start
