"""data/lecture_table1.json: the lecture's Table 1 (Cityscapes val IoU), checked against itself.

The per-class numbers and the printed means are independent: each printed mean must be the
mean of its row's 19 printed IoUs up to rounding. Every IoU is rounded to 0.1, so the mean of
the rounded values is within 0.05 of the true mean, and the printed mean is within 0.05 of
it again: |mean(row) - printed mean| <= 0.1.
"""
import json
import math
from pathlib import Path

import numpy as np

TABLE = Path(__file__).resolve().parents[1] / "data" / "lecture_table1.json"
CITYSCAPES_19 = ["road", "s.walk", "build.", "wall", "fence", "pole", "t-light", "t-sign", "veg", "terrain",
                 "sky", "person", "rider", "car", "truck", "bus", "train", "motor", "bike"]


def table():
    return json.loads(TABLE.read_text())


def test_shape_six_methods_nineteen_classes_and_a_mean():
    t = table()
    assert t["classes"] == CITYSCAPES_19
    assert [m["name"] for m in t["methods"]] == ["LRR", "DeepLabV2", "Piecewise", "PSP-Net", "DeepLabV3+", "GSCNN"]
    for m in t["methods"]:
        assert len(m["iou"]) == 19 and all(0 < v < 100 for v in m["iou"]), m["name"]
        assert 0 < m["mean"] < 100
    assert "source" in t and "Gated-SCNN" in t["source"]


def test_each_printed_mean_is_the_mean_of_its_row_within_rounding():
    for m in table()["methods"]:
        assert abs(np.mean(m["iou"]) - m["mean"]) <= 0.1 + 1e-9, (m["name"], np.mean(m["iou"]), m["mean"])


def test_the_decimal_comma_is_read_as_a_point_and_said_so():
    t = table()
    gscnn = next(m for m in t["methods"] if m["name"] == "GSCNN")
    assert math.isclose(gscnn["iou"][t["classes"].index("bus")], 91.2)
    assert any("91,2" in note and "91.2" in note for note in t["transcription_notes"])


def test_where_gscnn_is_not_the_largest_number_by_hand():
    """Read off the lecture's table by eye: wall and fence (PSP-Net), terrain (Piecewise), sky
    and truck (DeepLabV3+); and PSP-Net and DeepLabV3+ tie on the mean at 78.8."""
    t = table()
    iou = np.array([m["iou"] for m in t["methods"]])
    gscnn = iou[-1]
    not_best = [c for c, v, best in zip(t["classes"], gscnn, iou.max(0)) if v < best]
    assert not_best == ["wall", "fence", "terrain", "sky", "truck"]
    means = {m["name"]: m["mean"] for m in t["methods"]}
    assert means["PSP-Net"] == means["DeepLabV3+"] == 78.8


def test_self_test_q4_agrees_with_the_hand_count():
    """Leader minus runner-up by eye, under 1 point: road 0.1, sidewalk 0.5, building 0.5,
    wall 0.2, vegetation 0.3, sky 0.1, car 0.6; every other column leads by 1.5 or more."""
    from course_utils.selfcheck import expected
    assert expected("08.Q4") == 7
