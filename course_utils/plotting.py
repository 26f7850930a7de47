"""The course's one visual language: matrices with their numbers, image grids, sources.

Kernels and matrices share one diverging colour map centred on zero (red positive,
blue negative, white zero), so inserted zeros read as blanks in every notebook.
"""
from __future__ import annotations

import inspect
import io

import numpy as np

MATRIX_CMAP = "RdBu_r"
IMAGE_CMAP = "gray"


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

    Widgets call this on every control change: the Agg buffer is encoded with light
    compression, which costs a fraction of ``savefig``'s default.
    """
    from PIL import Image

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    buf = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buf, format="png", compress_level=1)
    return buf.getvalue()
