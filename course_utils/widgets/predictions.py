"""Notebook 06's demo: browse a segmentation model's predictions scene by scene.

The model runs once, when the widget is built; moving a control only recolours arrays
that already exist, so the browser answers at once even for a slow model.
"""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from .._checks import check_int
from ..labels import IGNORE_INDEX, as_label_array
from ..plotting import colorize, overlay, palette_table
from .base import Demo, register

VIEWS = ("prediction", "overlay", "errors", "ground truth", "image")
#: colour of a wrongly labelled pixel in the "errors" view (no grey pixel has it)
ERROR_COLOUR = np.array([1.0, 0.0, 0.0], dtype=np.float32)
MAX_SCENES = 16


def error_mask(labels, preds, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """True where a scored pixel (label != ``ignore_index``) is predicted wrongly."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    return (labels != preds) & (labels != ignore_index)


def error_image(image_hwc, labels, preds, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The image in dimmed grey with every wrong pixel painted :data:`ERROR_COLOUR`.

    Grey keeps the scene readable while leaving red to the mistakes alone.
    """
    grey = image_hwc.mean(-1, keepdims=True) * 0.6 + 0.2
    out = np.repeat(grey, 3, axis=-1).astype(np.float32)
    out[error_mask(labels, preds, ignore_index)] = ERROR_COLOUR
    return out


def colour_baseline(images, labels, num_classes: int) -> np.ndarray:
    """Predictions of a "model" that sees only a pixel's colour: nearest class-mean colour.

    Used when the browser is built without a model: instant, and instructive, because
    SynthCity varies colours per image, so colour alone gets many pixels wrong.
    """
    pix = images.transpose(0, 2, 3, 1).reshape(-1, 3)
    lab = labels.reshape(-1)
    means = np.full((num_classes, 3), np.inf, dtype=np.float32)
    for c in range(num_classes):
        sel = lab == c
        if sel.any():
            means[c] = pix[sel].mean(0)
    dist = ((pix[:, None, :] - means[None]) ** 2).sum(-1)
    return dist.argmin(1).reshape(labels.shape).astype(np.int64)


def _images(x):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 4:
        raise ValueError(f"images must have shape (N, 3, H, W), got {arr.shape}")
    return arr


def _labels(name, x):
    return None if x is None else as_label_array(name, x, ndims=(3,))


def legend_strip(classes, palette, width: float, dpi: float, fontsize: float = 8) -> np.ndarray:
    """The class legend rendered once to an RGBA array ``width`` inches wide.

    Shown with ``figimage`` it costs the figure one image per redraw; a live matplotlib
    legend (a text and a patch per class, laid out every time) doubled the render time.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    table, k = palette_table(palette)
    names = list(classes)[:k]
    ncol = 5 if len(names) <= 10 else 7
    strip = Figure(figsize=(width, legend_height(len(names), fontsize)), dpi=dpi)
    FigureCanvasAgg(strip)
    strip.legend(handles=[Patch(facecolor=table[i], edgecolor="0.4", linewidth=0.5, label=str(n))
                          for i, n in enumerate(names)],
                 loc="center", ncol=min(ncol, len(names)), fontsize=fontsize, frameon=False,
                 handlelength=1.2, columnspacing=1.2, borderaxespad=0.0)
    strip.canvas.draw()
    return np.asarray(strip.canvas.buffer_rgba()).copy()


def legend_height(num_classes: int, fontsize: float = 8) -> float:
    """Inches a :func:`legend_strip` of ``num_classes`` needs."""
    rows = -(-num_classes // (5 if num_classes <= 10 else 7))
    return (rows * 1.6 + 0.8) * fontsize / 72


class PredictionBrowser(Demo):
    """Three panels: the image, its ground truth, and the chosen view of the prediction.

    ``images`` ``(N, 3, H, W)`` in [0, 1], ``labels`` and ``preds`` ``(N, H, W)``
    (``IGNORE_INDEX`` = not scored). The views: the prediction's colours, the prediction over the image
    (weight ``opacity``), the errors (wrong pixels red on the grey image), the ground
    truth and the bare image. The message line gives the scene's pixel accuracy.
    """

    def __init__(self, images, labels, preds, classes=None, palette=None, title: str = ""):
        self.images = np.clip(images.transpose(0, 2, 3, 1).astype(np.float32), 0.0, 1.0)
        self.labels, self.preds = labels.astype(np.int64), preds.astype(np.int64)
        self.palette, self.classes, self.title = palette, classes, title
        # Colouring is the only per-scene work that does not depend on the controls.
        self.label_rgb = colorize(self.labels, palette)
        self.pred_rgb = colorize(self.preds, palette)
        n = len(self.images)
        controls = {
            "scene": widgets.IntSlider(value=0, min=0, max=n - 1, description="scene"),
            "view": widgets.Dropdown(options=VIEWS, value="overlay", description="view"),
            "opacity": widgets.FloatSlider(value=0.5, min=0.2, max=1.0, step=0.2, description="opacity"),
        }
        #: inches at the bottom of the figure for the class legend shared by all panels
        self.legend_inches = legend_height(len(classes)) if classes is not None else 0.0
        super().__init__(controls, figsize=(8.4, 3.0 + self.legend_inches))

    def build(self, fig):
        self.axes = fig.subplots(1, 3)
        blank = np.zeros_like(self.images[0])
        self.artists = [ax.imshow(blank) for ax in self.axes]
        for ax, name in zip(self.axes, ("image", "ground truth", "")):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name)
        if self.title:
            fig.suptitle(self.title)
        height = fig.get_figheight()
        bottom = (self.legend_inches + 0.06) / height
        top = 1.0 - (0.48 if self.title else 0.3) / height
        fig.subplots_adjust(left=0.01, right=0.99, bottom=bottom, top=top, wspace=0.05)
        if self.classes is not None:
            # One legend for every segmentation panel: they all use the same palette.
            strip = legend_strip(self.classes, self.palette, fig.get_figwidth(), fig.dpi)
            fig.figimage(strip, xo=0, yo=0, origin="upper")
        #: the RGB array shown in the third panel (tests read it)
        self.shown = blank

    def view_array(self, scene: int, view: str, opacity: float) -> np.ndarray:
        """What the third panel shows for these control values, ``(H, W, 3)`` in [0, 1]."""
        img, lab, pred = self.images[scene], self.labels[scene], self.preds[scene]
        if view == "prediction":
            return self.pred_rgb[scene]
        if view == "overlay":
            return overlay(img, pred, opacity, self.palette)
        if view == "errors":
            return error_image(img, lab, pred)
        if view == "ground truth":
            return self.label_rgb[scene]
        if view == "image":
            return img
        raise ValueError(f"view must be one of {', '.join(VIEWS)}; got {view!r}")

    def update(self, scene, view, opacity):
        self.shown = self.view_array(scene, view, opacity)
        self.artists[0].set_data(self.images[scene])
        self.artists[1].set_data(self.label_rgb[scene])
        self.artists[2].set_data(self.shown)
        self.axes[2].set_title("errors (red: wrong)" if view == "errors" else view)
        scored = self.labels[scene] != IGNORE_INDEX
        wrong = int(error_mask(self.labels[scene], self.preds[scene]).sum())
        total = int(scored.sum())
        acc = 100.0 * (total - wrong) / total if total else float("nan")
        return f"scene {scene}: {wrong} of {total} scored pixels wrong (pixel accuracy {acc:.1f} %)"


@register("predictions")
def prediction_browser(model=None, images=None, labels=None, *, preds=None, num_scenes: int = 8,
                       size: int = 96, seed: int = 10_000, classes=None, palette=None,
                       batch_size: int = 4, device=None) -> PredictionBrowser:
    """Browse predictions: scene slider, view (prediction / overlay / errors / ...), opacity.

    * ``model``: its predictions are computed once, here. Without ``images``, ``num_scenes``
      SynthCity scenes of ``size`` pixels (seed ``seed``, not a training seed) are drawn.
    * ``preds``: precomputed predictions ``(N, H, W)`` instead of a model.
    * neither: the colour-only baseline (:func:`colour_baseline`), so the browser works
      with no arguments at all.

    ``classes`` / ``palette`` default to SynthCity's (pass the data set's for VOC or
    Cityscapes). At most 16 scenes are browsed.
    """
    from ..datasets.synthcity import CLASSES, PALETTE, generate

    num_scenes = check_int("num_scenes", num_scenes, 1, MAX_SCENES)
    if model is not None and preds is not None:
        raise ValueError("give model or preds, not both")
    images = _images(images)
    labels, preds = _labels("labels", labels), _labels("preds", preds)
    if (images is None) != (labels is None):
        raise ValueError("images and labels go together: give both or neither")
    if images is None:
        if preds is not None:
            raise ValueError("preds need the images and labels they were computed for")
        images, labels = generate(num_scenes, size, seed)
    images, labels = images[:MAX_SCENES], labels[:MAX_SCENES]
    if len(images) != len(labels) or images.shape[-2:] != labels.shape[-2:] or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W) and labels (N, H, W) with the same N, H, W; got "
                         f"{images.shape} and {labels.shape}")
    classes = CLASSES if classes is None and palette is None else classes
    palette = PALETTE if palette is None else palette
    num_classes = len(classes) if classes is not None else len(palette)
    if model is not None:
        from ..training import predict
        preds = predict(model, images, batch_size, device)
        title = ""
    elif preds is None:
        preds = colour_baseline(images.astype(np.float32), labels, num_classes)
        title = "no model given: a colour-only baseline's predictions"
    else:
        title = ""
    preds = preds[:MAX_SCENES]
    if preds.shape != labels.shape:
        raise ValueError(f"preds must have the labels' shape {labels.shape}, got {preds.shape}")
    return PredictionBrowser(images, labels, preds, classes, palette, title)
