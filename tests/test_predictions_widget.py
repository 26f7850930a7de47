"""The prediction browser shows what the model predicts, and its errors view marks exactly the
wrong pixels (checked against masks built independently in the tests)."""
import numpy as np
import pytest
import torch
from torch import nn

from course_utils.labels import IGNORE_INDEX
from course_utils.plotting import colorize
from course_utils.widgets.predictions import (ERROR_COLOUR, VIEWS, colour_baseline, error_mask,
                                              prediction_browser)

H, W, K = 12, 16, 9


class Channel0Model(nn.Module):
    """A fixed fake model: class = floor(K * red channel), so its predictions are known."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))   # gives the browser a device to find

    def forward(self, x):
        cls = (x[:, 0] * K).long().clamp(0, K - 1)
        return nn.functional.one_hot(cls, K).permute(0, 3, 1, 2).float() + 0 * self.dummy


def _scenes(n=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, 3, H, W)).astype(np.float32)
    labels = rng.integers(0, K, (n, H, W))
    labels[:, 0, :3] = IGNORE_INDEX   # not scored: never an error
    return images, labels


def test_shows_the_models_predictions():
    images, labels = _scenes()
    demo = prediction_browser(Channel0Model(), images, labels)
    expected = np.clip((images[:, 0] * K).astype(np.int64), 0, K - 1)
    np.testing.assert_array_equal(demo.preds, expected)
    for scene in range(len(images)):
        demo.controls["scene"].value = scene
        demo.controls["view"].value = "prediction"
        np.testing.assert_array_equal(demo.shown, colorize(expected[scene]))
        np.testing.assert_array_equal(demo.artists[1].get_array(), colorize(labels[scene]))
        np.testing.assert_allclose(demo.artists[0].get_array(), images[scene].transpose(1, 2, 0))
        assert demo.error is None


def test_errors_view_marks_exactly_the_mismatching_pixels():
    images, labels = _scenes()
    preds = labels.copy()
    preds[preds == IGNORE_INDEX] = 0
    rng = np.random.default_rng(1)
    flip = rng.random(labels.shape) < 0.2
    preds[flip] = (preds[flip] + 1) % K
    demo = prediction_browser(images=images, labels=labels, preds=preds)
    demo.controls["view"].value = "errors"
    for scene in range(len(images)):
        demo.controls["scene"].value = scene
        red = np.all(demo.shown == ERROR_COLOUR, axis=-1)
        truth = flip[scene] & (labels[scene] != IGNORE_INDEX)
        np.testing.assert_array_equal(red, truth)
        assert f"{int(truth.sum())} of {int((labels[scene] != IGNORE_INDEX).sum())} scored pixels wrong" in demo.message.value


def test_perfect_predictions_have_no_red_and_full_accuracy():
    images, labels = _scenes(1)
    demo = prediction_browser(images=images, labels=labels, preds=np.where(labels == IGNORE_INDEX, 3, labels))
    demo.controls["view"].value = "errors"
    assert not np.all(demo.shown == ERROR_COLOUR, axis=-1).any()
    assert "pixel accuracy 100.0 %" in demo.message.value


def test_error_mask_ignores_void():
    labels = np.array([[0, 1], [IGNORE_INDEX, 2]])
    preds = np.array([[0, 2], [1, 1]])
    np.testing.assert_array_equal(error_mask(labels, preds), [[False, True], [False, True]])


def test_every_view_has_the_image_shape():
    demo = prediction_browser(images=_scenes(2)[0], labels=_scenes(2)[1], preds=_scenes(2)[1] % K)
    for view in VIEWS:
        assert demo.view_array(1, view, 0.5).shape == (H, W, 3)
    with pytest.raises(ValueError, match="view must be one of"):
        demo.view_array(0, "nonsense", 0.5)


def test_colour_baseline_recovers_flat_colours():
    # Each class painted one fixed colour: the nearest class-mean colour is always right.
    labels = np.random.default_rng(0).integers(0, 4, (2, 5, 6))
    colours = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32)
    images = colours[labels].transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(colour_baseline(images, labels, 4), labels)


def test_no_arguments_builds_fast_default():
    demo = prediction_browser()
    assert demo.error is None and demo.images.shape[0] == 8


def test_the_picture_carries_one_class_legend_under_the_panels():
    import io

    from PIL import Image

    from course_utils.datasets import PALETTE

    demo = prediction_browser(num_scenes=2, size=32)
    picture = np.asarray(Image.open(io.BytesIO(demo.image.value)).convert("RGB"))
    strip_rows = int(demo.legend_inches * demo.figure.dpi) - 2
    strip = picture[-strip_rows:].reshape(-1, 3)
    panels = demo.axes[0].get_window_extent()
    assert panels.y0 >= strip_rows, "the legend strip must not cover the panels"
    for colour in PALETTE:                     # every class's swatch is in the strip
        assert (strip == colour).all(axis=1).sum() >= 20, colour


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=np.zeros((2, 3, 4, 4), np.float32)), "images and labels go together"),
    (dict(images=np.zeros((3, 4, 4), np.float32), labels=np.zeros((3, 4, 4), int)), "images must have shape"),
    (dict(images=np.zeros((2, 3, 4, 4), np.float32), labels=np.zeros((2, 5, 4), int)), "images must be"),
    (dict(images=np.zeros((2, 3, 4, 4), np.float32), labels=np.zeros((2, 4, 4), int),
          preds=np.zeros((2, 4, 5), int)), "preds must have"),
    (dict(preds=np.zeros((2, 4, 4), int)), "preds need the images"),
    (dict(num_scenes=0), "num_scenes"),
    (dict(num_scenes=17), "num_scenes"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        prediction_browser(**kwargs)


def test_model_and_preds_are_exclusive():
    images, labels = _scenes(1)
    with pytest.raises(ValueError, match="model or preds"):
        prediction_browser(Channel0Model(), images, labels, preds=labels)
