"""The metrics package by subject, each against an independent reference: the edge labels
of the losses (boundaries), hand-worked crops and a model whose answer is known (zoomed
crops), brute-force boxes and hand-worked matches (instances)."""
import math
from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from course_utils.labels import IGNORE_INDEX
from course_utils.losses import label_edges
from course_utils.metrics import (ConfusionMatrix, box_iou, class_components, component_match_counts,
                                  label_boundary, match_boxes, zoomed_crop_miou)
from course_utils.metrics.crops import _back_to_crop
from course_utils.training import predict

pytestmark = pytest.mark.usefixtures("one_thread")


# -- boundaries vs the edge labels of the losses ---------------------------------------------
@given(h=st.integers(2, 12), w=st.integers(2, 12), c=st.integers(1, 4), void=st.sampled_from([0.0, 0.2]),
       seed=st.integers(0, 2**16))
def test_label_boundary_lies_inside_the_losses_edge_labels(h, w, c, void, seed):
    """The documented relation: label_boundary <= label_edges(radius=1), pixel by pixel."""
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, c, (h, w))
    lab[rng.random((h, w)) < void] = IGNORE_INDEX
    thin = label_boundary(lab, lab == IGNORE_INDEX)
    band = label_edges(torch.as_tensor(lab)[None])[0].numpy() > 0
    assert not (thin & ~band).any()


def test_a_straight_class_change_is_one_pixel_for_the_metric_and_two_for_the_loss():
    lab = np.zeros((6, 8), np.int64)
    lab[:, 4:] = 1                       # a vertical change between columns 3 and 4
    thin = label_boundary(lab)
    band = label_edges(torch.as_tensor(lab)[None])[0].numpy() > 0
    assert np.array_equal(np.flatnonzero(thin.any(0)), [3])        # upper/left side only
    assert np.array_equal(np.flatnonzero(band.any(0)), [3, 4])     # both sides
    # A diagonal-only contact is an edge for the loss, no boundary for the metric.
    diag = np.array([[1, 0], [0, 0]])
    diag_band = label_edges(torch.as_tensor(diag)[None])[0].numpy() > 0
    assert label_boundary(diag)[1, 1] == 0 and diag_band[1, 1] == 1


# -- zoomed crops ------------------------------------------------------------------------------
class ColourCode(torch.nn.Module):
    """Predicts class round(red * (C - 1)) everywhere: its answer is known for any input."""

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        k = torch.round(x[:, 0] * (self.num_classes - 1)).long().clamp(0, self.num_classes - 1)
        return torch.nn.functional.one_hot(k, self.num_classes).permute(0, 3, 1, 2).float() + 0 * self.dummy


def test_zoomed_crop_miou_by_hand():
    # One 16 x 16 image, uniformly red = class 1 of 3. The labels say class 1, except a
    # 4 x 4 block of class 2 in the top-left corner. The model says 1 everywhere.
    images = torch.zeros(1, 3, 16, 16)
    images[:, 0] = 0.5
    labels = np.ones((1, 16, 16), np.int64)
    labels[0, :4, :4] = 2
    got = zoomed_crop_miou(partial(predict, ColourCode(3)), images, labels, factors=(1, 2), num_classes=3)
    # f = 1: class 1 IoU (256 - 16) / 256, class 2 IoU 0, class 0 absent -> mean of two.
    # f = 2: the centred 8 x 8 crop (rows and columns 4..11) misses the block: IoU 1.
    assert math.isclose(got[0], ((256 - 16) / 256 + 0) / 2)
    assert math.isclose(got[1], 1.0)


def test_zoomed_crop_at_factor_one_is_the_whole_image_miou():
    rng = np.random.default_rng(0)
    images = torch.as_tensor(rng.integers(0, 3, (4, 1, 12, 12)) / 2, dtype=torch.float32).repeat(1, 3, 1, 1)
    labels = rng.integers(0, 3, (4, 12, 12))
    model = ColourCode(3)
    whole = ConfusionMatrix(3).update(model(images), labels).miou()
    sizes = []

    def labels_of(crops):
        sizes.append(len(crops))
        return predict(model, crops)

    assert math.isclose(zoomed_crop_miou(labels_of, images, labels, factors=(1,), num_classes=3, batch_size=3)[0],
                        whole)
    assert sizes == [3, 1]


@pytest.mark.parametrize("zoom", [1, 2, 3, 4])
def test_back_to_crop_inverts_an_integer_nearest_zoom(zoom):
    crop = np.random.default_rng(zoom).integers(0, 5, (5, 7))
    zoomed = np.repeat(np.repeat(crop, zoom, 0), zoom, 1)       # nearest upsampling by `zoom`
    assert np.array_equal(_back_to_crop(zoomed, 5, 7), crop)


def test_zoomed_crop_miou_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        zoomed_crop_miou(partial(predict, ColourCode(3)), torch.zeros(1, 3, 8, 8), np.zeros((1, 8, 8), np.int64))
    with pytest.raises(ValueError, match="images must be"):
        zoomed_crop_miou(partial(predict, ColourCode(3)), torch.zeros(1, 3, 8, 9), np.zeros((1, 8, 8), np.int64),
                         num_classes=3)
    with pytest.raises(ValueError, match="predict must be a function"):
        zoomed_crop_miou(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8),
                         np.zeros((1, 8, 8), np.int64), num_classes=3)


# -- instances -------------------------------------------------------------------------------
def test_components_and_boxes_by_hand():
    lab = np.zeros((6, 7), np.int64)
    lab[0:2, 0:2] = 3          # blob A
    lab[2, 2] = 3              # touches A only at a corner: another component (4-connectivity)
    lab[3:6, 4:7] = 3          # blob C
    lab[4, 5] = 1              # a hole of another class inside C does not split it
    components, boxes = class_components(lab, 3)
    assert components.max() == 3
    assert sorted(boxes) == sorted([(0, 2, 0, 2), (2, 3, 2, 3), (3, 6, 4, 7)])


@given(h=st.integers(1, 10), w=st.integers(1, 10), seed=st.integers(0, 2**16))
def test_boxes_are_the_extents_of_their_components(h, w, seed):
    lab = np.random.default_rng(seed).integers(0, 2, (h, w))
    components, boxes = class_components(lab, 1)
    assert len(boxes) == components.max()
    for i, box in enumerate(boxes, start=1):
        rows, cols = np.nonzero(components == i)
        assert box == (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)
    assert np.array_equal(components > 0, lab == 1)


def test_box_iou_closed_form():
    a, b = (0, 4, 0, 4), (2, 6, 2, 6)              # 16 and 16 pixels, overlap 2 x 2
    assert math.isclose(box_iou(a, b), 4 / (16 + 16 - 4))
    assert box_iou(a, a) == 1.0 and box_iou(a, (4, 5, 4, 5)) == 0.0
    with pytest.raises(ValueError, match="positive area"):
        box_iou(a, (1, 1, 0, 3))


def test_match_boxes_is_greedy_and_one_to_one():
    truth = [(0, 10, 0, 10), (0, 10, 8, 18)]
    # p0 overlaps t0 best (IoU 0.9) and t1 a little; p1 overlaps t0 at 0.6 only.
    preds = [(0, 10, 1, 10), (0, 10, 0, 6)]
    assert math.isclose(box_iou(truth[0], preds[0]), 0.9)
    assert math.isclose(box_iou(truth[0], preds[1]), 0.6)
    assert match_boxes(truth, preds) == [(0, 0)]          # t0 is taken; t1 has no partner >= 0.5
    # t1 overlaps only p0 (IoU 20 / 170): even at threshold 0.1, p0 is already t0's.
    assert math.isclose(box_iou(truth[1], preds[0]), 20 / 170)
    assert match_boxes(truth, preds, threshold=0.1) == [(0, 0)]
    assert match_boxes([], preds) == [] and match_boxes(truth, []) == []


def test_component_match_counts_over_images():
    t = np.zeros((2, 8, 8), np.int64)
    t[0, 1:4, 1:4] = 1
    t[1, 5:8, 5:8] = 1
    p = t.copy()
    p[1, 0:2, 0:2] = 1                 # an extra, false component in image 1
    assert component_match_counts(p, t, 1) == (2, 3, 2)
