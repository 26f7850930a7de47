"""The shared input checks: sizes as int-or-(h, w) pairs, label arrays."""
import numpy as np
import pytest
import torch

from course_utils._checks import check_hw
from course_utils.labels import IGNORE_INDEX, as_label_array


@pytest.mark.parametrize("value, expected", [
    (3, (3, 3)), ((2, 5), (2, 5)), ([4, 1], (4, 1)), (np.int64(7), (7, 7)),
    ((np.int32(2), 3), (2, 3)), (np.array([6, 8]), (6, 8)), (torch.Size([5, 9]), (5, 9)),
])
def test_check_hw_accepts_an_int_or_a_pair(value, expected):
    got = check_hw("size", value, 1)
    assert got == expected and all(type(v) is int for v in got)


@pytest.mark.parametrize("value", [0, (3, 0), (3,), (1, 2, 3), 2.0, (2.0, 2), True, (True, 2), "4",
                                   None, np.zeros((2, 2), int), 9, (1, 9)])
def test_check_hw_refuses_with_the_name_and_the_range(value):
    with pytest.raises(ValueError) as err:
        check_hw("crop", value, 1, 8)
    assert str(err.value).startswith("crop must be an integer in [1, 8] or a pair (height, width)")
    assert repr(value) in str(err.value) or isinstance(value, np.ndarray)


def test_check_hw_without_bounds_takes_any_integer():
    assert check_hw("padding", -2) == (-2, -2)
    with pytest.raises(ValueError, match=r"^padding must be an integer or a pair"):
        check_hw("padding", 1.5)


def test_as_label_array_keeps_integer_labels_and_refuses_the_rest():
    lab = np.array([[0, 1], [IGNORE_INDEX, 2]], dtype=np.uint8)
    out = as_label_array("labels", lab, num_classes=3)
    assert out is lab                                    # no copy of an integer array
    np.testing.assert_array_equal(as_label_array("labels", torch.from_numpy(lab)), lab)
    np.testing.assert_array_equal(as_label_array("labels", [[1, 2]]), [[1, 2]])
    with pytest.raises(ValueError, match="labels must hold integer class ids, got dtype float32"):
        as_label_array("labels", lab.astype(np.float32))
    with pytest.raises(ValueError, match="labels must hold integer class ids, got dtype bool"):
        as_label_array("labels", lab > 0)
    with pytest.raises(ValueError, match=r"preds must have shape \(N, H, W\), got \(2, 2\)"):
        as_label_array("preds", lab, ndims=(3,))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\] or 255 \(ignored\), found 2"):
        as_label_array("labels", lab, num_classes=2)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\], found 255"):
        as_label_array("labels", lab, num_classes=3, ignore_index=None)
    assert as_label_array("labels", np.zeros((0, 3), int), num_classes=1).shape == (0, 3)
