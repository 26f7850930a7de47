"""Every figure stored in the notebooks, checked from the committed outputs (nothing is run).

A figure is a code cell whose outputs hold an ``image/png``. The rules, and why each
threshold is what it is (also in docs/contributors.md, "Tests of what students and
instructors see"):

png     Each PNG decodes, and its longer side is at least 200 px and its shorter at least
        120 px. The course's smallest figures are one 5x5 matrix (221x237) and a row of
        tiny matrices (770x146); below the floor a figure is a thumbnail, e.g. one drawn
        at figsize=(2, 1.4) or saved at a lower dpi than setup()'s 80.
frame   The outer 2 px of each PNG are opaque white. The inline backend saves with a
        tight box plus 0.1 in of padding, 8 px at 80 dpi (measured: 6-14 px of white on
        every side of every committed figure), so content in the outer 2 px means the
        saved box cut something off: an artist left out of the layout box, a figure
        saved without the tight box, an image cropped by hand. A transparent background
        fails too: its black text vanishes on JupyterLab's dark theme.
panels  In a figure of label maps (the cell calls colorize, overlay, show_segmentation
        or class_legend), every image panel is at least 256 px on its shorter side. The
        course's scenes are 128 px and a pole is 1-2 px wide: drawn at 2x (nearest
        interpolation) it is 2-4 px on screen, the least that still shows when projected.
        Notebook 06's overlays at 140 px (1.1x) did not show their poles. (The shorter
        side, because a wide scene is no easier to read: 05's 192x384 scene, once drawn at
        127x252 px, was at 0.66x.) Panels are found
        in the PNG itself: blocks separated by white rows and columns (an XY cut) that
        are at least 20 px on both sides and at least 90 % non-white, i.e. images and
        matrices, not text, legend patches or colorbars.
key     Colour that encodes something is explained in the same cell. A value colour map
        (imshow with a cmap, pcolormesh, matshow, contourf, show_matrix/show_matrices
        without their printed numbers) needs a colorbar or a legend; class colours
        (colorize, overlay, show_segmentation(legend=False)) a legend or class_legend;
        a series given a label= (plot, bar, scatter, a patch, ...) a legend, or the label
        is never shown.

Exemptions are written where they apply, with their reason, so that review sees them:
``# no colorbar: <why>`` or ``# no legend: <why>`` on the line that draws (e.g.
``# no colorbar: the photograph itself``), ``# small panels: <why>`` anywhere in a cell
(e.g. 4x5 toy label maps). KNOWN_FAILURES lists the figures that break a rule today,
each with its reason; the test checks that each still does, so an entry must go when
its figure is fixed.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image   # matplotlib depends on Pillow, so every install of the course has it

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))

MIN_FIGURE_PX = (200, 120)          # longer side, shorter side
FRAME_PX = 2
WHITE = 250                         # R, G and B >= this (and opaque): the figure's white face
MIN_SEGMENTATION_PANEL_PX = 256
PANEL_MIN_SIDE_PX = 20              # smaller dense blocks are legend patches and colorbars
PANEL_MIN_FILL = 0.9

# Figures that break a rule now, in notebooks that others are editing; keyed by notebook
# and the first 12 hex digits of the SHA-256 of the cell's source (cell_digest), so an
# entry follows its cell when cells move. Fix the figure, then delete its entry (the test
# fails until you do); a changed cell no longer matches its entry and is checked afresh.
KNOWN_FAILURES: dict[tuple[str, str], dict[str, str]] = {
}


@dataclass(frozen=True)
class Figure:
    notebook: str        # file name
    cell: int            # index among all the notebook's cells, 0-based, as stored
    source: str
    pngs: tuple          # the bytes of each image/png output, in order

    @property
    def digest(self) -> str:
        return cell_digest(self.source)

    def __str__(self):
        return f"{self.notebook} cell {self.cell}"


def cell_digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def stored_figures(paths=NOTEBOOKS) -> list[Figure]:
    figures = []
    for path in paths:
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            pngs = tuple(base64.b64decode(out["data"]["image/png"]) for out in cell.get("outputs", [])
                         if "image/png" in out.get("data", {}))
            if cell["cell_type"] == "code" and pngs:
                figures.append(Figure(path.name, i, "".join(cell["source"]), pngs))
    return figures


# -- the pixels ------------------------------------------------------------------------------

def decode(png: bytes) -> np.ndarray:
    """(H, W, 4) uint8; raises if the bytes are not an image."""
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGBA"))


def content(rgba: np.ndarray) -> np.ndarray:
    """True where a pixel is not the opaque white face of the figure."""
    return (rgba[..., :3] < WHITE).any(-1) | (rgba[..., 3] < 255)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def blocks(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """XY cut: split at every all-white row, then every all-white column, and so on, until
    nothing splits; returns the leaves as (top, left, height, width)."""
    leaves, todo = [], [(0, 0, mask.shape[0], mask.shape[1])]
    while todo:
        top, left, h, w = todo.pop()
        sub = mask[top:top + h, left:left + w]
        rows, cols = _runs(sub.any(1)), _runs(sub.any(0))
        if not rows:
            continue
        if len(rows) == 1 and len(cols) == 1:
            (r0, r1), (c0, c1) = rows[0], cols[0]
            leaves.append((top + r0, left + c0, r1 - r0, c1 - c0))
        elif len(rows) > 1:
            todo += [(top + r0, left, r1 - r0, w) for r0, r1 in rows]
        else:
            todo += [(top, left + c0, h, c1 - c0) for c0, c1 in cols]
    return leaves


def image_panels(rgba: np.ndarray) -> list[tuple[int, int]]:
    """(height, width) of each image-like block: large enough and nearly all non-white."""
    mask = content(rgba)
    return sorted((h, w) for top, left, h, w in blocks(mask)
                  if min(h, w) >= PANEL_MIN_SIDE_PX and mask[top:top + h, left:left + w].mean() >= PANEL_MIN_FILL)


def png_problems(png: bytes) -> list[str]:
    try:
        rgba = decode(png)
    except Exception as err:        # any decoder complaint is the finding
        return [f"does not decode: {err}"]
    h, w = rgba.shape[:2]
    if max(h, w) < MIN_FIGURE_PX[0] or min(h, w) < MIN_FIGURE_PX[1]:
        return [f"{w}x{h} px, under the floor of {MIN_FIGURE_PX[0]} px (longer side) and {MIN_FIGURE_PX[1]} px"]
    return []


def frame_problems(png: bytes) -> list[str]:
    rgba = decode(png)
    f = FRAME_PX
    frame = np.concatenate([rgba[:f].reshape(-1, 4), rgba[-f:].reshape(-1, 4),
                            rgba[:, :f].reshape(-1, 4), rgba[:, -f:].reshape(-1, 4)])
    problems = []
    if (frame[:, 3] < 255).any():
        problems.append("transparent background (black text vanishes on a dark theme)")
    if (frame[:, :3] < WHITE).any(-1).any():
        sides = [name for name, edge in (("top", rgba[:f]), ("bottom", rgba[-f:]),
                                         ("left", rgba[:, :f]), ("right", rgba[:, -f:]))
                 if (edge[..., :3] < WHITE).any()]
        problems.append(f"content touches the {', '.join(sides)} edge: something was cut off")
    return problems


# -- the source ------------------------------------------------------------------------------

CLASS_COLOUR_CALLS = {"colorize", "overlay", "show_segmentation", "class_legend"}
VALUE_MAPS = {"pcolormesh", "pcolor", "matshow", "contourf", "tricontourf", "hexbin"}
SERIES = {"plot", "bar", "barh", "scatter", "step", "hist", "errorbar", "fill_between", "fill_betweenx",
          "stackplot", "axhline", "axvline", "axhspan", "axvspan", "Patch", "Rectangle", "Circle", "Line2D"}
EXEMPT_KEY = re.compile(r"#\s*no (?:colorbar|legend):\s*\S.{6,}")
EXEMPT_PANELS = re.compile(r"#\s*small panels:\s*\S.{6,}")


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _keyword(call: ast.Call, name: str):
    """The keyword's value node, True if it may come in through **options, else None."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return True if any(kw.arg is None for kw in call.keywords) else None


def _is_false(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _calls(source: str) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]


def draws_label_maps(source: str) -> bool:
    return any(_name(c) in CLASS_COLOUR_CALLS for c in _calls(source))


def encodes(call: ast.Call) -> str | None:
    """What the call's colours (or label) stand for: "value", "class", "series" or None."""
    name = _name(call)
    if name in VALUE_MAPS or (name in ("imshow", "show_images") and _keyword(call, "cmap") is not None) \
            or (name in ("show_matrix", "show_matrices") and _is_false(_keyword(call, "numbers"))):
        return "value"              # (an RGB imshow colours nothing; printed numbers are their own key)
    if name in ("colorize", "overlay") or (name == "show_segmentation" and _is_false(_keyword(call, "legend"))):
        return "class"              # (show_segmentation draws class_legend itself by default)
    if name in SERIES and any(kw.arg == "label" for kw in call.keywords):
        return "series"
    return None


def key_problems(source: str) -> list[str]:
    """Colour that encodes something without a colorbar or legend in the cell."""
    calls = _calls(source)
    names = {_name(c) for c in calls}
    keys = {"value": names & {"colorbar", "legend", "class_legend"},
            "class": names & {"legend", "class_legend"},
            "series": names & {"legend"}}
    needs = {"value": "colorbar or legend", "class": "legend", "series": "legend"}
    lines = source.splitlines()
    problems = []
    for call in calls:
        kind = encodes(call)
        if kind is None or keys[kind]:
            continue
        if not any(EXEMPT_KEY.search(line) for line in lines[call.lineno - 1: call.end_lineno]):
            what = {"value": "a value colour map", "class": "class colours", "series": "a label="}[kind]
            problems.append(f"line {call.lineno}: {_name(call)}(...) draws {what} and the cell has no "
                            f"{needs[kind]} (or say why on that line: '# no {needs[kind].split()[0]}: ...')")
    return problems


# -- one figure ------------------------------------------------------------------------------

def problems_of(fig: Figure) -> dict[str, str]:
    """{rule: what is wrong} for one figure; empty when it follows every rule."""
    found: dict[str, list[str]] = {}
    for k, png in enumerate(fig.pngs):
        at = f"image {k + 1}: " if len(fig.pngs) > 1 else ""
        bad = png_problems(png)
        found.setdefault("png", []).extend(at + b for b in bad)
        if bad and bad[0].startswith("does not decode"):      # nothing more to measure
            continue
        found.setdefault("frame", []).extend(at + b for b in frame_problems(png))
        if draws_label_maps(fig.source) and not EXEMPT_PANELS.search(fig.source):
            small = [min(hw) for hw in image_panels(decode(png)) if min(hw) < MIN_SEGMENTATION_PANEL_PX]
            if small:
                found.setdefault("panels", []).append(
                    f"{at}{len(small)} label-map panel(s) of {min(small)}-{max(small)} px (shorter side), "
                    f"under {MIN_SEGMENTATION_PANEL_PX} px (or say why in the cell: '# small panels: ...')")
    found["key"] = key_problems(fig.source)
    return {rule: "; ".join(msgs) for rule, msgs in found.items() if msgs}


FIGURES = stored_figures()


def test_there_are_figures():
    assert len(FIGURES) > 20


def verdict(fig: Figure, known: dict[str, str]) -> list[str]:
    """What is wrong with ``fig`` given its KNOWN_FAILURES entry: new failures, and known
    ones that no longer fail (whose entry must go)."""
    problems = problems_of(fig)
    wrong = [f"{fig}: {rule}: {why}" for rule, why in problems.items() if rule not in known]
    wrong += [f"{fig} now passes '{rule}': delete its KNOWN_FAILURES entry {(fig.notebook, fig.digest)}"
              for rule in known if rule not in problems]
    return wrong


@pytest.mark.parametrize("fig", FIGURES, ids=lambda f: f"{f.notebook[:2]}-c{f.cell}")
def test_figure(fig):
    wrong = verdict(fig, KNOWN_FAILURES.get((fig.notebook, fig.digest), {}))
    assert not wrong, "\n".join(wrong)


def test_known_failures_name_stored_figures():
    """An entry whose cell changed matches nothing: re-check the figure, then update or delete it."""
    stored = {(f.notebook, f.digest) for f in FIGURES}
    assert not [key for key in KNOWN_FAILURES if key not in stored]


# -- the rules catch what they are for (figures made here, saved as the inline backend does) --

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")            # no display, whatever MPLBACKEND says
    import matplotlib.pyplot as plt

    return plt


def _png(fig, **savefig) -> bytes:
    buf = io.BytesIO()
    options = dict(format="png", dpi=80, bbox_inches="tight", pad_inches=0.1)   # the inline backend's
    fig.savefig(buf, **{**options, **savefig})
    _pyplot().close(fig)
    return buf.getvalue()


def _grid(size_in: float, rows: int = 3, cols: int = 3):
    """rows x cols 128-px scenes at size_in inches each, as show_segmentation lays them out."""
    plt = _pyplot()
    scene = np.random.default_rng(0).random((128, 128, 3))
    fig, axes = plt.subplots(rows, cols, figsize=(size_in * cols, size_in * rows), squeeze=False)
    for ax in axes.flat:
        ax.imshow(scene)
        ax.set_title("prediction")
        ax.axis("off")
    fig.tight_layout()
    return fig


def test_panels_rule_catches_small_label_maps():
    seg = "fig = show_segmentation(images, labels, preds, alpha=0.55, size=2.0)\n"
    small = Figure("x.ipynb", 0, seg, (_png(_grid(2.0)),))     # the old notebook 06 overlays
    assert len(image_panels(decode(small.pngs[0]))) == 9 and "panels" in problems_of(small)
    large = Figure("x.ipynb", 0, seg, (_png(_grid(3.6, 2, 3)),))
    assert min(min(hw) for hw in image_panels(decode(large.pngs[0]))) >= MIN_SEGMENTATION_PANEL_PX
    assert problems_of(large) == {}
    # The same small panels pass when the cell says why, or when they are not label maps.
    assert "panels" not in problems_of(Figure("x.ipynb", 0, "# small panels: 4x5 toy maps\n" + seg, small.pngs))
    assert "panels" not in problems_of(Figure("x.ipynb", 0, "show_images(images)\n", small.pngs))


def test_frame_rule_catches_cut_off_content():
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    # A legend left out of the layout box: the tight box ends inside it.
    fig.legend(["a line"], loc="upper left", bbox_to_anchor=(0.9, 0.6)).set_in_layout(False)
    assert "right" in " ".join(frame_problems(_png(fig)))
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_ylabel("a long y label, saved without the tight box")
    fig.subplots_adjust(left=0.02)
    assert "left" in " ".join(frame_problems(_png(fig, bbox_inches=None)))
    fig, ax = plt.subplots(figsize=(4, 3))
    assert "transparent" in " ".join(frame_problems(_png(fig, transparent=True)))
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_ylabel("the same label, with the inline backend's tight box")
    fig.subplots_adjust(left=0.02)
    assert frame_problems(_png(fig)) == []


def test_png_rule_catches_thumbnails_and_broken_bytes():
    plt = _pyplot()
    assert png_problems(_png(plt.subplots(figsize=(2, 1.4))[0])) != []
    assert png_problems(_png(plt.subplots(figsize=(4, 3))[0])) == []
    assert "does not decode" in png_problems(b"\x89PNG\r\n\x1a\nnot an image")[0]


@pytest.mark.parametrize("source, complaint", [
    ("ax.imshow(m, cmap='magma')\n", "value colour map"),
    ("ax.imshow(m, **scale)\n", "value colour map"),                  # scale may hold a cmap
    ("ax.pcolormesh(m)\n", "value colour map"),
    ("show_matrices([a, b], numbers=False)\n", "value colour map"),
    ("ax.imshow(colorize(labels))\n", "class colours"),
    ("ax.imshow(overlay(image, labels, 0.7))\n", "class colours"),
    ("show_segmentation(images, labels, legend=False)\n", "class colours"),
    ("ax.plot(x, y, label='train')\nax.plot(x, z, label='val')\n", "label="),
])
def test_key_rule_catches_colour_without_a_key(source, complaint):
    assert complaint in " ".join(key_problems(source))


@pytest.mark.parametrize("source", [
    "im = ax.imshow(m, cmap='magma')\nfig.colorbar(im, ax=ax)\n",
    "ax.imshow(colorize(labels))\nclass_legend(fig)\n",
    "ax.imshow(photo, cmap='gray')   # no colorbar: the photograph itself\n",
    "ax.imshow(photo)\nshow_matrices([a, b])\nshow_segmentation(images, labels)\n",   # RGB; printed numbers; own legend
    "ax.plot(x, y, label='train')\nax.legend()\n",
    "fig.colorbar(im, ax=ax, label='value')\n",
])
def test_key_rule_accepts_keys_and_stated_exemptions(source):
    assert key_problems(source) == []


def test_known_failures_must_still_fail():
    fine = Figure("x.ipynb", 0, "ax.plot(x, y)\n", (_png(_pyplot().subplots(figsize=(4, 3))[0]),))
    assert verdict(fine, {}) == []
    assert "delete its KNOWN_FAILURES entry" in verdict(fine, {"panels": "was too small"})[0]


def test_key_exemption_needs_a_reason():
    assert key_problems("ax.imshow(m, cmap='gray')   # no colorbar:\n") != []
