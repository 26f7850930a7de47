"""The course's one visual language: matrices with their numbers, image grids, sources.

Kernels and matrices share one diverging colour map centred on zero (red positive,
blue negative, white zero), so inserted zeros read as blanks in every notebook;
values that are never negative use its positive half, POSITIVE_CMAP.
"""
from __future__ import annotations

import inspect
import struct
import zlib

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import ListedColormap

from .labels import IGNORE_INDEX, as_label_array

MATRIX_CMAP = "RdBu_r"
IMAGE_CMAP = "gray"
# The positive half of MATRIX_CMAP, white at 0 to dark red, for values that are never
# negative (counts, coverage, non-negative weights): on the diverging map such a matrix
# would use only half the colours, and this one keeps 0 white as every matrix does.
# Use it with clim (0, max).
POSITIVE_CMAP = ListedColormap(colormaps[MATRIX_CMAP](np.linspace(0.5, 1.0, 128)))


def symmetric_limit(m) -> float:
    """The colour limit that centres the map on zero for this matrix (never 0)."""
    m = np.asarray(m, dtype=float)
    finite = m[np.isfinite(m)]
    return float(np.max(np.abs(finite))) if finite.size and np.any(finite) else 1.0


def format_number(v: float, fmt: str | None = None) -> str:
    """Short cell label: integers without decimals, others with up to 3 significant digits."""
    if fmt is not None:
        return format(v, fmt)
    if not np.isfinite(v):
        return str(v)
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.3g}".replace("0.", ".", 1) if abs(v) < 1 else f"{v:.3g}"


def show_matrix(m, ax=None, title: str | None = None, numbers: bool = True, fmt: str | None = None,
                vmax: float | None = None, fontsize: float | None = None, max_numbers: int = 400):
    """Draw matrix ``m`` as coloured cells with its values printed in them.

    Numbers are skipped when the matrix has more than ``max_numbers`` cells (they would
    be unreadable and slow). Returns the ``AxesImage``.
    """
    import matplotlib.pyplot as plt

    m = np.asarray(m, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    ax = ax if ax is not None else plt.gca()
    vmax = symmetric_limit(m) if vmax is None else vmax
    im = ax.imshow(m, cmap=MATRIX_CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax.set_xticks(np.arange(-0.5, m.shape[1], 1), minor=True)
    ax.set_yticks(np.arange(-0.5, m.shape[0], 1), minor=True)
    ax.grid(which="minor", color="0.8", linewidth=0.5)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    if numbers and m.size <= max_numbers:
        size = fontsize or max(5.0, 10.0 - 0.25 * max(m.shape))
        for (r, c), v in np.ndenumerate(m):
            dark = abs(v) > 0.6 * vmax
            ax.text(c, r, format_number(v, fmt), ha="center", va="center", fontsize=size,
                    color="white" if dark else "black")
    if title:
        ax.set_title(title)
    return im


def show_matrices(matrices, titles=(), numbers: bool = True, fmt: str | None = None,
                  shared_scale: bool = False, size: float = 2.6, suptitle: str | None = None):
    """Several matrices side by side, one panel each, sized by their shapes."""
    import matplotlib.pyplot as plt

    matrices = [np.atleast_2d(np.asarray(m, dtype=float)) for m in matrices]
    widths = [m.shape[1] for m in matrices]
    height = max(m.shape[0] for m in matrices)
    fig, axes = plt.subplots(1, len(matrices), figsize=(size * len(matrices), size * 0.95),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    vmax = max(symmetric_limit(m) for m in matrices) if shared_scale else None
    for i, (ax, m) in enumerate(zip(axes[0], matrices)):
        show_matrix(m, ax=ax, title=titles[i] if i < len(titles) else None, numbers=numbers,
                    fmt=fmt, vmax=vmax, fontsize=max(5.0, 10.0 - 0.35 * height))
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_images(images, titles=(), ncols: int | None = None, size: float = 2.6, cmap: str = IMAGE_CMAP,
                vmin: float | None = 0.0, vmax: float | None = 1.0, suptitle: str | None = None):
    """A grid of images (2-D grey or ``(H, W, 3)`` RGB in [0, 1]) without axes."""
    import matplotlib.pyplot as plt

    images = list(images)
    ncols = ncols or len(images)
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(axes.flat, images)):
        img = np.asarray(img)
        ax.imshow(np.clip(img, vmin, vmax) if vmin is not None and vmax is not None else img,
                  cmap=cmap if img.ndim == 2 else None, vmin=vmin, vmax=vmax)
        if i < len(titles):
            ax.set_title(titles[i])
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_source(obj) -> None:
    """Display the source of a function or class as a highlighted code block."""
    from IPython.display import Markdown, display

    display(Markdown(f"```python\n{inspect.getsource(obj).rstrip()}\n```"))


def render_png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes.

    Widgets call this on every control change, so the encoding is the cheapest that
    still compresses flat figures well: every row stored as its difference from the row
    above (PNG filter 2, "Up", one NumPy subtraction), then zlib at level 1. That costs
    about half of PIL's encoder with adaptive filters, for files of the same size.
    """
    fig.canvas.draw()
    return encode_png(np.asarray(fig.canvas.buffer_rgba())[..., :3])


def encode_png(rgb) -> bytes:
    """An 8-bit RGB array ``(H, W, 3)`` as PNG bytes (see :func:`render_png`)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ValueError(f"rgb must be a non-empty uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}")
    h, w, _ = rgb.shape
    rows = rgb.reshape(h, 3 * w)
    filtered = np.empty((h, 3 * w + 1), dtype=np.uint8)
    filtered[:, 0] = 2                                   # filter type of each row: Up
    filtered[0, 1:] = rows[0]                            # the row above the first is zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])   # uint8: wraps modulo 256, as PNG wants

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)    # 8 bits, truecolour, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(filtered.tobytes(), 1)) + chunk(b"IEND", b""))


# -- segmentation labels --------------------------------------------------------------------
# Label maps are coloured with the data set's palette (SynthCity uses the Cityscapes
# colours); IGNORE_INDEX is drawn black so "not scored" never looks like a class.
IGNORE_COLOUR = (0.0, 0.0, 0.0)


def palette_table(palette=None) -> tuple[np.ndarray, int]:
    """A float lookup table (class id -> RGB in [0, 1], ``IGNORE_INDEX`` -> black) and K.

    ``palette`` is ``(K, 3)`` (0..255 or 0..1), default SynthCity's Cityscapes colours.
    """
    if palette is None:
        from .datasets.synthcity import PALETTE as palette
    pal = np.asarray(palette, dtype=np.float64)
    if pal.ndim != 2 or pal.shape[1] != 3 or not 1 <= pal.shape[0] <= IGNORE_INDEX:
        raise ValueError(f"palette must be (K, 3) with 1 <= K <= {IGNORE_INDEX}, got shape {pal.shape}")
    if pal.max() > 1.0:              # 0..255 integers, as the data sets define them
        pal = pal / 255.0
    table = np.zeros((IGNORE_INDEX + 1, 3), dtype=np.float32)
    table[: len(pal)] = pal
    table[IGNORE_INDEX] = IGNORE_COLOUR
    return table, len(pal)


def _label_maps(labels, num_classes: int | None = None) -> np.ndarray:
    arr = as_label_array("labels", labels, ndims=None, num_classes=num_classes)
    if arr.ndim < 2:
        raise ValueError(f"labels must have shape (H, W) or (N, H, W), got {arr.shape}")
    return arr


def colorize(labels, palette=None) -> np.ndarray:
    """Label map(s) ``(..., H, W)`` -> RGB float32 ``(..., H, W, 3)`` in [0, 1]; void is black.

    ``palette`` is ``(K, 3)`` (0..255 or 0..1), default SynthCity's Cityscapes colours.
    """
    table, k = palette_table(palette)
    return table[_label_maps(labels, k)]


def _image_hwc(image) -> np.ndarray:
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)                     # (3, H, W) as the models see it
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image must be (3, H, W) or (H, W, 3), got shape {img.shape}")
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def overlay(image, labels, alpha: float = 0.5, palette=None) -> np.ndarray:
    """``image`` blended with the colours of ``labels`` (weight ``alpha``); ignored pixels keep the image."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    img = _image_hwc(image)
    arr = _label_maps(labels)
    if arr.shape != img.shape[:2]:
        raise ValueError(f"labels must be (H, W) = {img.shape[:2]} like the image, got {arr.shape}")
    colours = colorize(arr, palette)
    mixed = (1.0 - alpha) * img + alpha * colours
    return np.where((arr == IGNORE_INDEX)[..., None], img, mixed)


def show_segmentation(images, labels, preds=None, palette=None, classes=None, alpha: float | None = None,
                      size: float = 2.2, legend: bool = True, titles=("image", "labels", "prediction")):
    """One row per sample: the image, its label map and (optionally) a prediction.

    ``images`` ``(N, 3, H, W)`` (or a list), ``labels`` and ``preds`` ``(N, H, W)``. With
    ``alpha`` the maps are drawn as overlays on the image. One legend (:func:`class_legend`)
    names the classes of all the panels (default: SynthCity's when ``palette`` is None).
    """
    import matplotlib.pyplot as plt

    images = [images[i] for i in range(len(images))]
    labels = [labels[i] for i in range(len(labels))]
    if len(labels) != len(images) or (preds is not None and len(preds) != len(images)):
        raise ValueError(f"images, labels and preds must have the same length, got {len(images)}, "
                         f"{len(labels)} and {None if preds is None else len(preds)}")
    columns = [labels] if preds is None else [labels, [preds[i] for i in range(len(preds))]]
    ncols = 1 + len(columns)
    h, w = _label_maps(labels[0]).shape[-2:]
    fig, axes = plt.subplots(len(images), ncols, squeeze=False,
                             figsize=(size * ncols * w / h, size * len(images)))
    for r, img in enumerate(images):
        rgb = _image_hwc(img)
        axes[r, 0].imshow(rgb)
        for c, maps in enumerate(columns, start=1):
            shown = colorize(maps[r], palette) if alpha is None else overlay(rgb, maps[r], alpha, palette)
            axes[r, c].imshow(shown)
        for c in range(ncols):
            axes[r, c].axis("off")
            if r == 0 and c < len(titles):
                axes[r, c].set_title(titles[c])
    fig.tight_layout()
    if legend:
        if classes is None and palette is None:
            from .datasets.synthcity import CLASSES as classes
        if classes is not None:
            class_legend(fig, classes, palette)
    return fig


def class_legend(ax_or_fig, classes=None, palette=None, fontsize: float = 8, ncol: int | None = None):
    """One legend naming the classes by their colours; returns the ``Legend``.

    Given a ``Figure``: a single legend for all its segmentation panels, in a strip added
    below them (the figure grows by the strip's height, the panels keep their size, so
    call it after ``tight_layout``). Given an ``Axes``: a legend just right of it.
    ``classes`` (names) default to SynthCity's when ``palette`` is None too.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if classes is None:
        if palette is not None:
            raise ValueError("classes must be given with a palette (the names of its colours)")
        from .datasets.synthcity import CLASSES as classes
    table, k = palette_table(palette)
    names = list(classes)
    if len(names) > k:
        raise ValueError(f"classes has {len(names)} names but the palette only {k} colours")
    handles = [Patch(facecolor=table[i], edgecolor="0.4", linewidth=0.5, label=str(name))
               for i, name in enumerate(names)]
    if not isinstance(ax_or_fig, Figure):
        return ax_or_fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                                fontsize=fontsize, frameon=False, borderaxespad=0.0)
    fig = ax_or_fig
    ncol = ncol or min(len(handles), max(1, int(fig.get_figwidth() * 72 / (fontsize * 11))))
    rows = -(-len(handles) // ncol)
    strip = (rows * 1.5 + 0.6) * fontsize / 72               # inches: rows of text plus a margin
    old = fig.get_figheight()
    fig.set_figheight(old + strip)
    # Growing the figure would stretch the panels: put each back at its old size in inches.
    for ax in fig.axes:
        x, y, w, h = ax.get_position(original=True).bounds
        ax.set_position((x, (y * old + strip) / (old + strip), w, h * old / (old + strip)))
    for text in fig.texts:                                     # e.g. a suptitle keeps its place
        tx, ty = text.get_position()
        text.set_position((tx, (ty * old + strip) / (old + strip)))
    return fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
                      fontsize=fontsize, frameon=False, handlelength=1.2, columnspacing=1.0)
