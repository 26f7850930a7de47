"""The boundary F-score's paper protocol (``rule="davis"``, ``average="image"``) against an
independent transcription of DAVIS's measure, and hand-worked cases.

The transcription follows davis-2017's ``python/lib/davis/measures/f_boundary.py``
(``seg2bmap``, ``db_eval_boundary``; Perazzi et al., CVPR 2016) and Gated-SCNN's
``utils/f_boundary.py`` (nv-tlabs/GSCNN: void zeroed in both masks, per-class F summed over
images and divided by their number). skimage is not a dependency of the course, so its
``disk`` and ``binary_dilation`` are written out here with numpy: matching is by dilation
with a disk, as DAVIS does, not by the distance transform the course uses. The two agree
for integer radii (squared pixel distances are integers, so ``d <= r`` iff
``dx^2 + dy^2 <= r^2``, a distance exactly at the tolerance included by both);
``test_distance_transform_equals_disk_dilation_for_integer_radii`` checks it at every offset.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import ndimage

from course_utils.metrics import boundary_counts, boundary_f1, davis_tolerance_px, label_boundary


# -- the transcription of DAVIS / Gated-SCNN -----------------------------------------------------
def davis_seg2bmap(seg):
    """seg2bmap: binarise, XOR with the east, south and south-east neighbours; on the last row
    only east, on the last column only south, the last pixel never."""
    seg = np.array(seg, dtype=np.int64)
    seg[seg > 0] = 1
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b.astype(bool)


def skimage_disk(radius):
    """skimage.morphology.disk: the grid arange(-r, r + 1), squared distance <= r^2."""
    grid = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(grid, grid)
    return x ** 2 + y ** 2 <= radius ** 2


def binary_dilation(image, footprint):
    """OR of the image shifted by every offset of a centred, symmetric odd-sized footprint;
    outside the image counts as False."""
    r = footprint.shape[0] // 2
    h, w = image.shape
    padded = np.pad(image, r)
    out = np.zeros_like(image, dtype=bool)
    for dy, dx in np.argwhere(footprint) - r:
        out |= padded[r + dy:r + dy + h, r + dx:r + dx + w]
    return out


def davis_db_eval_boundary(foreground_mask, gt_mask, bound_th=0.008, ignore_mask=None):
    """db_eval_boundary -> (F, matched_fg, n_fg, matched_gt, n_gt); ``ignore_mask`` as in
    Gated-SCNN's version (void pixels set to 0 in both masks)."""
    fg, gt = np.array(foreground_mask), np.array(gt_mask)
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(fg.shape))
    if ignore_mask is not None:
        fg[ignore_mask] = 0
        gt[ignore_mask] = 0
    fg_boundary, gt_boundary = davis_seg2bmap(fg), davis_seg2bmap(gt)
    footprint = skimage_disk(int(bound_pix))
    assert footprint.shape[0] % 2 == 1          # an integer radius: the footprint is centred
    fg_dil, gt_dil = binary_dilation(fg_boundary, footprint), binary_dilation(gt_boundary, footprint)
    gt_match, fg_match = gt_boundary & fg_dil, fg_boundary & gt_dil
    n_fg, n_gt = int(fg_boundary.sum()), int(gt_boundary.sum())
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision, recall = fg_match.sum() / n_fg, gt_match.sum() / n_gt
    f = 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return f, int(fg_match.sum()), n_fg, int(gt_match.sum()), n_gt


def gscnn_class_f(seg_mask, gt_mask, num_classes, bound_th):
    """eval_mask_boundary + train.py's Fpc / Fc: per class, the mean over images of F."""
    fpc, fc = np.zeros(num_classes), np.zeros(num_classes)
    for k in range(num_classes):
        fs = np.array([davis_db_eval_boundary((s == k).astype(np.uint8), (g == k).astype(np.uint8),
                                              bound_th, g == 255)[0]
                       for s, g in zip(seg_mask, gt_mask)], dtype=float)
        fc[k] = np.sum(~np.isnan(fs))
        fpc[k] = np.nansum(fs)
    return fpc / fc


# -- random label maps with regions (not only salt and pepper) -----------------------------------
def blobs(rng, n, h, w, classes, cell):
    """Label maps drawn on a coarse grid and enlarged, with a few single-pixel flips."""
    coarse = rng.integers(0, classes, (n, -(-h // cell), -(-w // cell)))
    lab = np.kron(coarse, np.ones((1, cell, cell), np.int64))[:, :h, :w]
    flip = rng.random(lab.shape) < 0.05
    lab[flip] = rng.integers(0, classes, int(flip.sum()))
    return lab


# -- the boundary rule -----------------------------------------------------------------------
def test_davis_rule_by_hand():
    # Only a diagonal contact: DAVIS marks the top-left pixel, the course does not.
    lab = np.array([[0, 0],
                    [0, 1]])
    np.testing.assert_array_equal(label_boundary(lab, rule="davis"), [[1, 1], [1, 0]])
    np.testing.assert_array_equal(label_boundary(lab), [[0, 1], [1, 0]])
    # One pixel in the middle: on the last row only the east neighbour counts, on the last
    # column only the south one, so the image's edge is no boundary.
    dot = np.zeros((3, 3), int)
    dot[1, 1] = 1
    np.testing.assert_array_equal(label_boundary(dot, rule="davis"), [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(label_boundary(dot), [[0, 1, 0], [1, 1, 0], [0, 0, 0]])
    for lab in (np.array([[0, 0], [0, 1]]), dot):
        np.testing.assert_array_equal(label_boundary(lab, rule="davis"), davis_seg2bmap(lab))


def test_davis_rule_on_labels_and_void_by_hand():
    # Three labels: any change of label counts, as seg2bmap does for each binary mask.
    lab = np.array([[0, 1, 2],
                    [0, 1, 2]])
    np.testing.assert_array_equal(label_boundary(lab, rule="davis"), [[1, 1, 0], [1, 1, 0]])
    # Class-agnostic void is a label of its own: its edge is a boundary (course: no boundary).
    lab = np.array([[0, 0, 9],
                    [0, 0, 9]])
    void = lab == 9
    np.testing.assert_array_equal(label_boundary(lab, void, rule="davis"), [[0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(label_boundary(lab, void), [[0, 0, 0], [0, 0, 0]])
    # Two void pixels holding different values are still the same (void) region.
    lab2 = np.array([[0, 0, 7],
                     [0, 0, 8]])
    np.testing.assert_array_equal(label_boundary(lab2, lab2 > 6, rule="davis"), [[0, 1, 0], [0, 1, 0]])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(1, 9), w=st.integers(1, 9))
def test_davis_rule_equals_seg2bmap_on_random_masks(seed, h, w):
    rng = np.random.default_rng(seed)
    for mask in (rng.integers(0, 2, (h, w)), blobs(rng, 1, h, w, 2, 3)[0]):
        np.testing.assert_array_equal(label_boundary(mask, rule="davis"), davis_seg2bmap(mask))
        # The course's boundary is the part of DAVIS's without diagonal-only contacts.
        assert not (label_boundary(mask) & ~label_boundary(mask, rule="davis")).any()


# -- the tolerance: distance transform vs disk dilation --------------------------------------
@pytest.mark.parametrize("radius", [0, 1, 2, 3, 4, 5, 7])
def test_distance_transform_equals_disk_dilation_for_integer_radii(radius):
    # One pixel in the middle of a grid large enough for every offset: the pixels within
    # ``radius`` by the Euclidean distance transform (the course) and the disk's dilation
    # (DAVIS) are the same set, the ones at exactly ``radius`` (3-4-5 triangles) included.
    n = 2 * radius + 5
    centre = np.zeros((n, n), bool)
    centre[n // 2, n // 2] = True
    within = ndimage.distance_transform_edt(~centre) <= radius
    np.testing.assert_array_equal(within, binary_dilation(centre, skimage_disk(radius)))
    if radius == 5:
        assert within[n // 2 + 3, n // 2 + 4] and within[n // 2 + 5, n // 2]


def test_a_non_integer_disk_is_off_the_pixel_grid():
    # Where the two would differ: skimage's disk(1.5) is built on arange(-1.5, 2.5), an even
    # 4 x 4 grid with no centre pixel, not the Euclidean ball of radius 1.5 (3 x 3, all nine).
    assert skimage_disk(1.5).shape == (4, 4)
    ball = ndimage.distance_transform_edt(~np.pad([[True]], 1)) <= 1.5
    assert ball.all() and ball.shape == (3, 3)


def test_davis_tolerance_px_by_hand():
    # DAVIS at 480 x 854: diagonal 979.65, * 0.008 = 7.84 -> 8 px.
    assert davis_tolerance_px(0.008, (480, 854)) == 8.0
    # Gated-SCNN's thresholds on Cityscapes' 1024 x 2048 (diagonal 2289.73).
    assert [davis_tolerance_px(th, (1024, 2048)) for th in (0.0005, 0.001875, 0.00375, 0.005)] == [2, 5, 9, 12]
    assert davis_tolerance_px(3, (10, 10)) == 3.0        # >= 1: pixels
    with pytest.raises(ValueError, match="bound_th"):
        davis_tolerance_px(-0.1, (10, 10))


# -- per-image averaging ----------------------------------------------------------------------
def test_average_image_by_hand():
    # A: prediction = truth, a vertical change with 4 boundary pixels: F = 1.
    # B: nothing to find, 4 predicted boundary pixels: precision 0, recall 1 -> F = 0.
    # C: no boundary on either side: F = 1 (DAVIS: precision = recall = 1).
    change = np.array([[0, 0, 1, 1]] * 4)
    flat = np.zeros((4, 4), int)
    for rule in ("course", "davis"):
        pred, true = np.stack([change, change]), np.stack([change, flat])
        assert boundary_f1(pred, true, 1, rule=rule, average="image") == 0.5
        # Summed counts: precision 4/8, recall 4/4 -> F = 2/3.
        assert math.isclose(boundary_f1(pred, true, 1, rule=rule), 2 / 3)
        assert boundary_f1(np.stack([change, flat]), np.stack([change, flat]), 1, rule=rule, average="image") == 1.0
        assert boundary_f1(np.stack([change, flat]), np.stack([flat, flat]), 1, rule=rule, average="image") == 0.5


def test_defaults_are_the_course_protocol():
    rng = np.random.default_rng(0)
    p, t = blobs(rng, 3, 12, 14, 3, 4), blobs(rng, 3, 12, 14, 3, 4)
    t[:, :2] = 255
    assert boundary_f1(p, t, 2) == boundary_f1(p, t, 2, rule="course", average="dataset")
    np.testing.assert_array_equal(boundary_counts(p, t, 2, 3), boundary_counts(p, t, 2, 3, rule="course"))


# -- the whole measure against the transcription ----------------------------------------------
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bound_th=st.sampled_from([0, 1, 2, 3, 0.1, 0.3]))
def test_binary_masks_match_db_eval_boundary(seed, bound_th):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(3, 16, 2)
    p, t = blobs(rng, 3, h, w, 2, int(rng.integers(1, 5))), blobs(rng, 3, h, w, 2, int(rng.integers(1, 5)))
    tol = davis_tolerance_px(bound_th, (h, w))
    ref = [davis_db_eval_boundary(pi, ti, bound_th) for pi, ti in zip(p, t)]
    counts = boundary_counts(p, t, tol, ignore_index=None, rule="davis")
    np.testing.assert_array_equal(counts, [r[1:] for r in ref])
    assert math.isclose(boundary_f1(p, t, tol, ignore_index=None, rule="davis", average="image"),
                        np.mean([r[0] for r in ref]), abs_tol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bound_th=st.sampled_from([1, 2, 0.1]))
def test_per_class_with_void_matches_gated_scnn(seed, bound_th):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(4, 14, 2)
    p, t = blobs(rng, 3, h, w, 3, 3), blobs(rng, 3, h, w, 3, 3)
    void = blobs(rng, 3, h, w, 4, 3) == 0                     # about a quarter void regions
    t[void] = 255
    tol = davis_tolerance_px(bound_th, (h, w))
    ours = boundary_f1(p, t, tol, num_classes=3, rule="davis", average="image")
    np.testing.assert_allclose(ours, gscnn_class_f(p, t, 3, bound_th), rtol=0, atol=1e-12)


def test_per_class_void_by_hand():
    # Truth: class 1 on the left, void on the right. Prediction: class 1 everywhere.
    # Gated-SCNN zeroes void in both class-1 masks, so both get the same boundary at the
    # void's edge (F = 1); class 0 is absent from both (F = 1).
    t = np.array([[1, 1, 255, 255]] * 3)
    p = np.ones((3, 4), int)
    np.testing.assert_array_equal(boundary_f1(p, t, 0, num_classes=2, rule="davis", average="image"), [1, 1])
    np.testing.assert_array_equal(boundary_counts(p, t, 0, num_classes=2, rule="davis")[0, 1], [3, 3, 3, 3])
    np.testing.assert_array_equal(gscnn_class_f(p[None], t[None], 2, 1e-9), [1, 1])


# -- bad options --------------------------------------------------------------------------------
@pytest.mark.parametrize("call, words", [
    (lambda: boundary_f1(np.zeros((3, 3), int), np.zeros((3, 3), int), rule="DAVIS"), ["rule", "'course'", "'davis'"]),
    (lambda: boundary_counts(np.zeros((3, 3), int), np.zeros((3, 3), int), rule="seg2bmap"), ["rule", "'davis'"]),
    (lambda: label_boundary(np.zeros((3, 3), int), rule=None), ["rule", "'course'"]),
    (lambda: boundary_f1(np.zeros((3, 3), int), np.zeros((3, 3), int), average="mean"),
     ["average", "'dataset'", "'image'"]),
])
def test_bad_options_name_the_parameter_and_the_choices(call, words):
    with pytest.raises(ValueError) as e:
        call()
    for word in words:
        assert word in str(e.value)
