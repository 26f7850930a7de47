"""ConfusionMatrix against a direct, set-based computation of IoU and accuracy."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from course_utils.metrics import ConfusionMatrix

IGNORE = 255


pytestmark = pytest.mark.usefixtures("one_thread")


def set_based_iou(pred, target, num_classes, ignore_index=IGNORE):
    """IoU of each class from the sets of pixel positions, as the lecture defines it."""
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    valid = set(np.flatnonzero(target != ignore_index).tolist())
    ious = []
    for c in range(num_classes):
        p = set(np.flatnonzero(pred == c).tolist()) & valid
        t = set(np.flatnonzero(target == c).tolist())
        union = p | t
        ious.append(len(p & t) / len(union) if union else math.nan)
    return np.array(ious)


def random_case(rng, n, h, w, c, ignore_fraction):
    target = rng.integers(0, c, size=(n, h, w))
    pred = np.where(rng.random((n, h, w)) < 0.6, target, rng.integers(0, c, size=(n, h, w)))
    target[rng.random((n, h, w)) < ignore_fraction] = IGNORE
    return pred, target


@given(n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 7),
       ignore=st.sampled_from([0.0, 0.2, 0.9]), seed=st.integers(0, 2**16))
def test_against_set_based_iou(n, h, w, c, ignore, seed):
    pred, target = random_case(np.random.default_rng(seed), n, h, w, c, ignore)
    cm = ConfusionMatrix(c).update(pred, target)
    ref = set_based_iou(pred, target, c)
    np.testing.assert_array_equal(np.isnan(cm.iou()), np.isnan(ref))
    np.testing.assert_allclose(cm.iou()[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=1e-12)
    valid = target != IGNORE
    if valid.any():
        assert cm.pixel_accuracy() == pytest.approx((pred[valid] == target[valid]).mean(), rel=1e-12)
        assert cm.miou() == pytest.approx(np.nanmean(ref), rel=1e-12)
    else:
        assert math.isnan(cm.pixel_accuracy()) and math.isnan(cm.miou())
    assert cm.total == valid.sum()


def test_rows_are_truth_columns_are_predictions():
    cm = ConfusionMatrix(3).update(np.array([[0, 2, 2]]), np.array([[0, 1, 2]]))
    np.testing.assert_array_equal(cm.matrix, [[1, 0, 0], [0, 0, 1], [0, 0, 1]])


def test_nan_rules():
    # Class 0 and 1 occur, class 2 is predicted only, class 3 appears nowhere.
    cm = ConfusionMatrix(4).update(np.array([[0, 1, 2]]), np.array([[0, 1, 1]]))
    iou = cm.iou()
    assert iou[0] == 1.0 and iou[1] == 0.5 and iou[2] == 0.0 and math.isnan(iou[3])
    assert cm.miou() == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    empty = ConfusionMatrix(4)
    assert np.isnan(empty.iou()).all() and math.isnan(empty.miou()) and math.isnan(empty.pixel_accuracy())


def test_ignore_index_pixels_are_not_counted_whatever_is_predicted():
    target = np.array([[0, IGNORE, 1, IGNORE]])
    cm = ConfusionMatrix(2).update(np.array([[0, 1, 1, 0]]), target)
    assert cm.total == 2 and cm.pixel_accuracy() == 1.0
    custom = ConfusionMatrix(2, ignore_index=7).update(np.array([[0, 1]]), np.array([[0, 7]]))
    assert custom.total == 1


def test_logits_and_label_maps_numpy_and_torch_give_the_same_matrix():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)
    target = rng.integers(0, 4, size=(2, 5, 6))
    labels = logits.argmax(1)
    a = ConfusionMatrix(4).update(logits, target)
    b = ConfusionMatrix(4).update(torch.from_numpy(logits), torch.from_numpy(target))
    c = ConfusionMatrix(4).update(labels, target)
    d = ConfusionMatrix(4)
    for i in range(2):   # one image at a time: (C, H, W) scores and (H, W) labels
        d.update(torch.from_numpy(logits[i]), target[i].astype(np.uint8))
    for m in (b, c, d):
        np.testing.assert_array_equal(a.matrix, m.matrix)


def test_accumulating_batches_equals_one_shot_and_matrices_add():
    rng = np.random.default_rng(1)
    pred, target = random_case(rng, 6, 7, 9, 5, 0.1)
    whole = ConfusionMatrix(5).update(pred, target)
    parts = [ConfusionMatrix(5).update(pred[i:i + 2], target[i:i + 2]) for i in range(0, 6, 2)]
    running = ConfusionMatrix(5)
    for i in range(6):
        running.update(pred[i], target[i])
    np.testing.assert_array_equal(running.matrix, whole.matrix)
    np.testing.assert_array_equal((parts[0] + parts[1] + parts[2]).matrix, whole.matrix)
    merged = parts[0].copy()
    merged += parts[1]
    merged.merge(parts[2])
    np.testing.assert_array_equal(merged.matrix, whole.matrix)
    assert parts[0].total < whole.total   # __add__ did not modify its operands


def test_dataset_level_miou_is_not_the_mean_of_batch_mious():
    # Batch 1: a big correct road; batch 2: a tiny pole mostly missed.
    t1, p1 = np.zeros((1, 10, 10), int), np.zeros((1, 10, 10), int)
    t2, p2 = np.zeros((1, 10, 10), int), np.zeros((1, 10, 10), int)
    t2[0, :, 0] = 1
    p2[0, 0, 0] = 1
    cm = ConfusionMatrix(2).update(p1, t1).update(p2, t2)
    per_batch = np.nanmean([ConfusionMatrix(2).update(p1, t1).miou(), ConfusionMatrix(2).update(p2, t2).miou()])
    assert cm.miou() == pytest.approx(np.nanmean(set_based_iou(np.concatenate([p1, p2]), np.concatenate([t1, t2]), 2)))
    assert abs(cm.miou() - per_batch) > 0.1


@pytest.mark.parametrize("pred, target, match", [
    (np.array([[0, 1]]), np.array([[0, 3]]), "target must be in \\[0, 2\\] or 255 \\(ignored\\), found 3"),
    (np.array([[0, 1]]), np.array([[0, -1]]), r"target must be in \[0, 2\] or 255 \(ignored\), found -1"),
    (np.array([[0, 3]]), np.array([[0, 1]]), r"pred must be in \[0, 2\], found 3"),
    (np.array([[0, 1]]), np.array([[0.0, 1.0]]), "integer"),
    (np.array([[0, 1, 1]]), np.array([[0, 1]]), "same shape"),
    (np.zeros((2, 1, 2), np.float32), np.array([[0, 1]]), "score channels"),
    (np.zeros((1, 2), np.float32), np.array([[0, 1]]), "floating point"),
    (np.array([[0, 1]]), np.array([0, 1]), "target must be labels"),
    ([[0, 1]], np.array([[0, 1]]), "NumPy array"),
])
def test_bad_input(pred, target, match):
    with pytest.raises(ValueError, match=match):
        ConfusionMatrix(3).update(pred, target)


def test_bad_construction_and_merging():
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="ignore_index"):
        ConfusionMatrix(5, ignore_index=2)
    with pytest.raises(ValueError, match="3-class"):
        ConfusionMatrix(2) + ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"target must be in \[0, 1\], found 255"):
        ConfusionMatrix(2, ignore_index=None).update(np.array([[0]]), np.array([[255]]))


def test_table_lists_every_class_and_the_mean():
    cm = ConfusionMatrix(3).update(np.array([[0, 1, 1, 0]]), np.array([[0, 1, 0, 0]]))
    text = cm.table(["road", "pole", "sky"])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["class", "IoU", "%"]
    road = next(line for line in lines if line.startswith("road")).split()
    assert road[1] == "66.7" and road[2] == "66.7"       # IoU 2/3, recall 2/3
    assert next(line for line in lines if line.startswith("sky")).split()[1] == "n/a"
    assert lines[-1].startswith("mean") and "58.3" in lines[-1]   # (2/3 + 1/2) / 2
    with pytest.raises(ValueError, match="class_names"):
        cm.table(["road"])


def test_all_reduce_is_a_no_op_without_torch_distributed():
    cm = ConfusionMatrix(2).update(np.array([[0, 1]]), np.array([[0, 1]]))
    np.testing.assert_array_equal(cm.all_reduce().matrix, [[1, 0], [0, 1]])


def _reduce_worker(rank, world, init_file, pred, target, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cm = ConfusionMatrix(4).update(pred[rank::world], target[rank::world]).all_reduce()
        out[rank] = torch.from_numpy(cm.matrix)
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_the_matrices_of_two_processes(tmp_path):
    import torch.multiprocessing as mp

    pred, target = random_case(np.random.default_rng(3), 6, 5, 5, 4, 0.1)
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_reduce_worker, args=(2, str(tmp_path / "init"), pred, target, out), nprocs=2, join=True)
    whole = ConfusionMatrix(4).update(pred, target).matrix
    for rank in range(2):
        np.testing.assert_array_equal(out[rank].numpy(), whole)


# -- the IoU formula, written once (course_utils.metrics.confusion.iou_of_matrix) --------------
@given(n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 7),
       seed=st.integers(0, 2**16))
def test_iou_of_a_bare_matrix_against_set_based_iou(n, h, w, c, seed):
    from course_utils.metrics import class_iou_of_matrix, iou_of_matrix, miou_of_matrix

    pred, target = random_case(np.random.default_rng(seed), n, h, w, c, 0.2)
    expected = set_based_iou(pred, target, c)
    matrix = ConfusionMatrix(c).update(pred, target).matrix
    np.testing.assert_allclose(iou_of_matrix(matrix), expected, equal_nan=True)
    finite = expected[~np.isnan(expected)]
    assert (math.isnan(miou_of_matrix(matrix)) if finite.size == 0
            else math.isclose(miou_of_matrix(matrix), finite.mean()))
    for k in range(c):
        got = class_iou_of_matrix(k)(matrix)
        assert math.isnan(got) if math.isnan(expected[k]) else math.isclose(got, expected[k])


def test_iou_of_matrix_by_hand_and_bad_input():
    from course_utils.metrics import class_iou_of_matrix, iou_of_matrix

    # 2 classes: 3 pixels of class 0 right, 1 predicted as 1; 2 of class 1 right.
    m = np.array([[3, 1], [0, 2]])
    np.testing.assert_allclose(iou_of_matrix(m), [3 / 4, 2 / 3])
    with pytest.raises(ValueError, match="square"):
        iou_of_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="k must be"):
        class_iou_of_matrix(2)(m)
