"""Every registered demo, every combination of its controls, in plain Python.

Setting a control's value fires the observers exactly as a slider move in the browser
does; the demo must then show a picture or a sentence, never raise.
"""
import io

import pytest
from PIL import Image

from course_utils.widgets import DEMOS, Demo
from course_utils.widgets.base import CSS_DPI, PIXEL_DENSITY, clipped_texts, sweep


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DEMOS))
def test_every_combination_renders(name):
    demo = DEMOS[name]()
    assert isinstance(demo, Demo)
    assert demo.error is None, f"initial state raised {demo.error!r}"
    first = bytes(demo.image.value)
    assert first.startswith(b"\x89PNG"), "the demo must show a PNG from the start"
    changes, pictures = 0, {first}
    for values, _ in sweep(demo):
        changes += 1
        assert demo.error is None, f"{name} with {values} raised {demo.error!r}"
        assert not clipped_texts(demo.figure), f"{name} with {values}: clipped {clipped_texts(demo.figure)}"
        pictures.add(bytes(demo.image.value))
    assert changes > 0
    # Moving the controls must change what the class sees.
    assert len(pictures) > 1


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_every_demo_opens_on_a_valid_sharp_picture(name):
    demo = DEMOS[name]()
    # A stored notebook shows the opening picture: a valid state, never an error sentence.
    assert demo.error is None and 'color:#b00' not in demo.message.value
    assert not demo.veil.get_visible()
    assert not clipped_texts(demo.figure), clipped_texts(demo.figure)
    # Rendered at twice the pixels, displayed at the 72-dpi size.
    width_in, height_in = demo.figure.get_size_inches()
    picture = Image.open(io.BytesIO(demo.image.value))
    # (Agg truncates the size to whole pixels: within one pixel.)
    assert abs(picture.size[0] - width_in * CSS_DPI * PIXEL_DENSITY) <= 1
    assert abs(picture.size[1] - height_in * CSS_DPI * PIXEL_DENSITY) <= 1
    assert abs(int(demo.image.width) - width_in * CSS_DPI) <= 0.5


def test_invalid_combination_shows_a_sentence_not_a_traceback():
    from course_utils.widgets.base import Demo
    import ipywidgets as widgets

    class Picky(Demo):
        def build(self, fig):
            self.ax = fig.add_subplot()

        def update(self, k):
            if k > 2:
                raise ValueError(f"k must be <= 2, got {k}")

    demo = Picky({"k": widgets.IntSlider(value=1, min=1, max=3)})
    demo.controls["k"].value = 3
    assert "k must be &lt;= 2" in demo.message.value and demo.error is None
    demo.controls["k"].value = 2
    assert demo.message.value == ""


@pytest.mark.parametrize("name", ["unpooling", "conv_matrix", "bootstrap"])
def test_cached_text_draws_what_plain_agg_draws(name):
    """The demo canvas stamps cached string bitmaps at whole pixels: the picture must be
    plain Agg's up to that sub-pixel shift (a wrong offset or colour would move or recolour
    every text, far more than this bound)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    demo = DEMOS[name]()
    fig = demo.figure
    fig.canvas.draw()
    cached = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    FigureCanvasAgg(fig).draw()
    plain = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    differs = np.abs(cached - plain).max(-1) > 64
    assert differs.mean() < 0.01
    # Away from text (every pixel of a text-free row) the two are identical.
    text_rows = np.zeros(len(differs), bool)
    renderer = fig.canvas.get_renderer()
    height = fig.bbox.height
    for text in fig.findobj(lambda a: hasattr(a, "get_text") and a.get_visible() and a.get_text()):
        box = text.get_window_extent(renderer)
        text_rows[max(0, int(height - box.y1) - 2): int(height - box.y0) + 3] = True
    assert not differs[~text_rows].any()


def test_every_widget_module_is_imported_by_the_package_so_its_demos_are_registered():
    import pkgutil
    import sys

    import course_utils.widgets as widgets

    modules = {m.name for m in pkgutil.iter_modules(widgets.__path__)}
    missing = sorted(m for m in modules if f"course_utils.widgets.{m}" not in sys.modules)
    assert missing == [], f"import these in course_utils/widgets/__init__.py: {missing}"
    assert all(builder.__name__ in widgets.__all__ for builder in widgets.DEMOS.values())
