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


# -- segmentation labels --------------------------------------------------------------------
# Label maps are coloured with the data set's palette (SynthCity uses the Cityscapes
# colours); the ignore index 255 is drawn black so "not scored" never looks like a class.
IGNORE_COLOUR = (0.0, 0.0, 0.0)


def _palette_table(palette) -> np.ndarray:
    """A 256-entry float lookup table (class id -> RGB in [0, 1]) and the number of classes."""
    if palette is None:
        from .datasets.synthcity import PALETTE as palette
    pal = np.asarray(palette, dtype=np.float64)
    if pal.ndim != 2 or pal.shape[1] != 3 or not 1 <= pal.shape[0] <= 255:
        raise ValueError(f"palette must be (K, 3) with 1 <= K <= 255, got shape {pal.shape}")
    if pal.max() > 1.0:              # 0..255 integers, as the data sets define them
        pal = pal / 255.0
    table = np.zeros((256, 3), dtype=np.float32)
    table[: len(pal)] = pal
    table[255] = IGNORE_COLOUR
    return table, len(pal)


def _label_array(labels) -> np.ndarray:
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"labels must hold integer class ids, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"labels must be (H, W) or (N, H, W), got shape {arr.shape}")
    return arr


def colorize(labels, palette=None) -> np.ndarray:
    """Label map(s) ``(..., H, W)`` -> RGB float32 ``(..., H, W, 3)`` in [0, 1]; 255 is black.

    ``palette`` is ``(K, 3)`` (0..255 or 0..1), default SynthCity's Cityscapes colours.
    """
    table, k = _palette_table(palette)
    arr = _label_array(labels)
    bad = ((arr < 0) | (arr >= k)) & (arr != 255)
    if bad.any():
        raise ValueError(f"labels must be in [0, {k - 1}] or 255 (ignored), found {int(arr[bad].flat[0])}")
    return table[arr]


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
    arr = _label_array(labels)
    if arr.shape != img.shape[:2]:
        raise ValueError(f"labels must be (H, W) = {img.shape[:2]} like the image, got {arr.shape}")
    colours = colorize(arr, palette)
    mixed = (1.0 - alpha) * img + alpha * colours
    return np.where((arr == 255)[..., None], img, mixed)


def show_segmentation(images, labels, preds=None, palette=None, classes=None, alpha: float | None = None,
                      size: float = 2.2, legend: bool = True, titles=("image", "labels", "prediction")):
    """One row per sample: the image, its label map and (optionally) a prediction.

    ``images`` ``(N, 3, H, W)`` (or a list), ``labels`` and ``preds`` ``(N, H, W)``. With
    ``alpha`` the maps are drawn as overlays on the image. The legend names the classes
    (default: SynthCity's when ``palette`` is None).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    images = [images[i] for i in range(len(images))]
    labels = [labels[i] for i in range(len(labels))]
    if len(labels) != len(images) or (preds is not None and len(preds) != len(images)):
        raise ValueError(f"images, labels and preds must have the same length, got {len(images)}, "
                         f"{len(labels)} and {None if preds is None else len(preds)}")
    columns = [labels] if preds is None else [labels, [preds[i] for i in range(len(preds))]]
    ncols = 1 + len(columns)
    h, w = _label_array(labels[0]).shape[-2:]
    fig, axes = plt.subplots(len(images), ncols, squeeze=False,
                             figsize=(size * ncols * w / h, size * len(images) + (0.4 if legend else 0)))
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
    if legend:
        if classes is None and palette is None:
            from .datasets.synthcity import CLASSES as classes
        if classes is not None:
            table, k = _palette_table(palette)
            handles = [Patch(color=table[i], label=name) for i, name in enumerate(list(classes)[:k])]
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=7,
                       frameon=False)
    bottom = 0.4 / fig.get_figheight() if legend and classes is not None else 0
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig
