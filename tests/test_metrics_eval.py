"""Evaluation beyond mIoU: boundary F-score, crop-factor mIoU, paired bootstrap (hand-made cases)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from course_utils.metrics import (ConfusionMatrix, boundary_counts, boundary_f1, class_iou_of_matrix, crop_box,
                                  crop_factor_miou, f1_from_counts, label_boundary, miou_of_matrix,
                                  paired_bootstrap, per_image_confusion, vanishing_point_from_labels)


def square(h=20, w=20, top=5, left=5, size=8):
    lab = np.zeros((h, w), np.int64)
    lab[top:top + size, left:left + size] = 1
    return lab


# -- boundary F-score -------------------------------------------------------------------------
def test_label_boundary_by_hand():
    lab = np.array([[0, 0, 1],
                    [0, 0, 1],
                    [2, 2, 2]])
    expected = np.array([[0, 1, 0],
                         [1, 1, 1],
                         [0, 0, 0]], bool)
    np.testing.assert_array_equal(label_boundary(lab), expected)
    void = lab == 1
    np.testing.assert_array_equal(label_boundary(lab, void), [[0, 0, 0], [1, 1, 0], [0, 0, 0]])


def test_identical_masks_score_one():
    t = square()
    assert boundary_f1(t, t, tolerance_px=0) == 1.0
    assert boundary_f1(np.zeros((5, 5), int), np.zeros((5, 5), int)) == 1.0   # no boundary at all


@pytest.mark.parametrize("shift, tolerance, perfect", [(1, 1, True), (1, 2, True), (2, 2, True),
                                                       (1, 0, False), (3, 2, False), (4, 1, False)])
def test_a_shift_within_the_tolerance_is_forgiven_beyond_it_is_not(shift, tolerance, perfect):
    t, p = square(), square(left=5 + shift)
    f = boundary_f1(p, t, tolerance_px=tolerance)
    assert (f == 1.0) == perfect
    assert 0.0 <= f <= 1.0


def test_boundary_f1_by_hand():
    # Target boundary: the column left of a vertical class change (5 pixels). The prediction
    # puts its change 3 columns further right: no pixel within 1 px; within 3 px all match.
    t = np.zeros((5, 10), int)
    t[:, 4:] = 1
    p = np.zeros((5, 10), int)
    p[:, 7:] = 1
    assert boundary_f1(p, t, tolerance_px=1) == 0.0
    assert boundary_f1(p, t, tolerance_px=3) == 1.0
    # Half the predicted boundary is spurious: precision 1/2, recall 1 -> F = 2/3.
    p2 = t.copy()
    p2[:, 8:] = 2
    counts = boundary_counts(p2, t, tolerance_px=1)
    np.testing.assert_array_equal(counts, [[5, 10, 5, 5]])
    assert math.isclose(boundary_f1(p2, t, tolerance_px=1), 2 / 3)


def test_boundary_f1_sums_counts_over_images_and_skips_void():
    t, p = square(), square(left=9)
    both = boundary_f1(np.stack([t, p]), np.stack([t, t]), tolerance_px=1)
    c = boundary_counts(t, t, 1) + boundary_counts(p, t, 1)
    assert math.isclose(both, f1_from_counts(c[0]))
    # A void target region hides the prediction's boundaries inside it.
    tv = t.copy()
    tv[:, 12:] = 255
    pv = t.copy()
    pv[2:4, 14:18] = 1
    assert boundary_f1(pv, tv, tolerance_px=0) == 1.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), tol=st.sampled_from([0, 1, 1.5, 3]))
def test_boundary_f1_is_symmetric_and_counts_match_a_brute_force_reference(seed, tol):
    rng = np.random.default_rng(seed)
    p, t = rng.integers(0, 3, (2, 7, 9)), rng.integers(0, 3, (2, 7, 9))
    # Swapping prediction and target swaps precision and recall: F1 is unchanged.
    assert math.isclose(boundary_f1(p, t, tol), boundary_f1(t, p, tol))
    # Brute force: a boundary pixel matches when some other-side boundary pixel is within tol.
    for pi, ti, c in zip(p, t, boundary_counts(p, t, tol)):
        bp, bt = np.argwhere(label_boundary(pi)), np.argwhere(label_boundary(ti))

        def matched(a, b):
            if len(a) == 0 or len(b) == 0:
                return 0
            d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
            return int((d.min(1) <= tol).sum())
        np.testing.assert_array_equal(c, [matched(bp, bt), len(bp), matched(bt, bp), len(bt)])


def test_boundary_f1_per_class():
    t = square()
    p = square(left=9)
    f = boundary_f1(p, t, tolerance_px=1, num_classes=3)
    assert f.shape == (3,) and f[2] == 1.0          # class 2 is absent from both
    assert f[0] < 1 and f[1] < 1


# -- crop factors -------------------------------------------------------------------------------
def test_crop_box_by_hand():
    assert crop_box((100, 200), (49.5, 99.5), 1) == (0, 100, 0, 200)
    assert crop_box((100, 200), (49.5, 99.5), 2) == (25, 75, 50, 150)
    assert crop_box((9, 9), (4, 4), 3) == (3, 6, 3, 6)
    assert crop_box((100, 200), (10, 190), 4) == (0, 25, 150, 200)   # shifted back inside
    with pytest.raises(ValueError, match="factor"):
        crop_box((10, 10), (5, 5), 0.5)


def test_crop_factor_miou_by_hand():
    # A 20x20 image: the centre 10x10 is predicted perfectly, the border is all wrong.
    t = np.zeros((20, 20), np.int64)
    t[:, 10:] = 1
    p = 1 - t
    p[5:15, 5:15] = t[5:15, 5:15]
    result = crop_factor_miou(p[None], t[None], [(9.5, 9.5)], factors=(1, 2, 4), num_classes=2)
    # Factor 1: the whole image. Class 0: 50 correct of 200 true, 150 more predicted.
    cm = ConfusionMatrix(2).update(p, t)
    assert math.isclose(result[0], cm.miou())
    assert math.isclose(result[0], 50 / 350)
    assert result[1] == 1.0 and result[2] == 1.0     # the 10x10 and 5x5 crops are all correct
    # Centres default to the image centre.
    np.testing.assert_allclose(crop_factor_miou(p[None], t[None], None, (1, 2, 4), 2), result)


def test_crop_factor_miou_is_dataset_level():
    t = np.zeros((2, 8, 8), np.int64)
    t[0, :, 4:] = 1
    p = t.copy()
    p[1] = 1
    centers = [(4, 4), (4, 4)]
    [value] = crop_factor_miou(p, t, centers, factors=(1,), num_classes=2)
    cm = ConfusionMatrix(2).update(p, t)
    assert math.isclose(value, cm.miou())


def test_vanishing_point_from_labels_by_hand():
    # A road triangle narrowing to its apex at row 3, column 12.
    lab = np.full((20, 24), 4, np.int64)
    for r in range(3, 20):
        half = (r - 3) // 2
        lab[r, 12 - half:12 + half + 1] = 0
    assert vanishing_point_from_labels(lab) == (3.0, 12.0)
    assert vanishing_point_from_labels(np.full((5, 7), 4)) == (2.0, 3.0)   # no road: the centre


# -- paired bootstrap ---------------------------------------------------------------------------
def make_predictions(n=30, h=16, w=16, error_rate=0.1, seed=0, targets=None):
    rng = np.random.default_rng(seed)
    if targets is None:
        targets = rng.integers(0, 3, (n, h, w))
    preds = targets.copy()
    wrong = rng.random(targets.shape) < error_rate
    preds[wrong] = (targets[wrong] + 1) % 3
    return preds, targets


def test_miou_of_matrix_agrees_with_confusion_matrix():
    p, t = make_predictions(n=3)
    cms = per_image_confusion(p, t, 3)
    assert cms.shape == (3, 3, 3)
    cm = ConfusionMatrix(3).update(p, t)
    np.testing.assert_array_equal(cms.sum(0), cm.matrix)
    assert math.isclose(miou_of_matrix(cms.sum(0)), cm.miou())
    assert math.isclose(class_iou_of_matrix(1)(cms.sum(0)), cm.iou()[1])


def test_identical_models_give_a_zero_interval():
    p, t = make_predictions()
    cms = per_image_confusion(p, t, 3)
    r = paired_bootstrap(cms, cms, n_resamples=200, seed=0)
    assert (r.difference, r.low, r.high) == (0.0, 0.0, 0.0)
    assert not r.excludes_zero


def test_a_consistently_better_model_has_an_interval_excluding_zero():
    t = make_predictions()[1]
    good = per_image_confusion(make_predictions(error_rate=0.05, seed=1, targets=t)[0], t, 3)
    bad = per_image_confusion(make_predictions(error_rate=0.15, seed=2, targets=t)[0], t, 3)
    r = paired_bootstrap(good, bad, n_resamples=500, seed=0)
    assert r.low > 0 and r.excludes_zero and r.low <= r.difference <= r.high
    r2 = paired_bootstrap(bad, good, n_resamples=500, seed=0)
    assert r2.high < 0


def test_the_bootstrap_resamples_images_and_sums_their_matrices():
    # Two images: A is perfect on image 0 and wrong on image 1; the difference's interval
    # must contain the extremes of resampling {0, 0} (only the good image) and {1, 1}.
    t = np.array([[[0, 1], [0, 1]], [[0, 0], [1, 1]]])
    a = t.copy()
    a[1] = 1 - t[1]
    b = t.copy()
    ca, cb = per_image_confusion(a, t, 2), per_image_confusion(b, t, 2)
    r = paired_bootstrap(ca, cb, n_resamples=2000, seed=0)
    assert r.high == 0.0 and r.low == -1.0        # image 1 twice: mIoU 0 vs 1
    expected = miou_of_matrix(ca.sum(0)) - miou_of_matrix(cb.sum(0))
    assert math.isclose(r.difference, expected)


def test_bootstrap_is_deterministic_in_the_seed():
    t = make_predictions()[1]
    a = per_image_confusion(make_predictions(error_rate=0.1, seed=3, targets=t)[0], t, 3)
    b = per_image_confusion(make_predictions(error_rate=0.11, seed=4, targets=t)[0], t, 3)
    assert paired_bootstrap(a, b, 300, seed=7) == paired_bootstrap(a, b, 300, seed=7)
    assert paired_bootstrap(a, b, 300, seed=7) != paired_bootstrap(a, b, 300, seed=8)


def test_bootstrap_of_per_image_scores_and_boundary_counts():
    scores_a, scores_b = np.full(10, 0.8), np.full(10, 0.5)
    r = paired_bootstrap(scores_a, scores_b, 100)
    assert math.isclose(r.difference, 0.3) and math.isclose(r.low, 0.3) and math.isclose(r.high, 0.3)
    t = np.stack([square(left=k) for k in range(3, 9)])
    near = np.stack([square(left=k + 1) for k in range(3, 9)])
    far = np.stack([square(left=k + 4) for k in range(3, 9)])
    r = paired_bootstrap(boundary_counts(near, t, 1), boundary_counts(far, t, 1), 200, metric=f1_from_counts)
    assert r.low > 0
    with pytest.raises(ValueError, match="metric"):
        paired_bootstrap(np.zeros((3, 4)), np.zeros((3, 4)))


@pytest.mark.parametrize("call, match", [
    (lambda: paired_bootstrap(np.zeros((3, 2, 2)), np.zeros((4, 2, 2))), "same shape"),
    (lambda: paired_bootstrap(np.zeros(3), np.zeros(3), n_resamples=0), "n_resamples"),
    (lambda: paired_bootstrap(np.zeros(3), np.zeros(3), confidence=1.5), "confidence"),
    (lambda: boundary_f1(np.zeros((3, 3), int), np.zeros((3, 4), int)), "same shape"),
    (lambda: boundary_f1(np.zeros((3, 3)), np.zeros((3, 3), int)), "pred must hold integer class ids"),
    (lambda: boundary_f1(np.zeros((3, 3), int), np.zeros((3, 3), int), tolerance_px=-1), "tolerance_px"),
    (lambda: crop_factor_miou(np.zeros((1, 4, 4), int), np.zeros((1, 4, 4), int), [(1, 1, 1)], (1,), 2),
     "centers"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_significant_best_bolds_a_model_that_wins_on_every_resample():
    from course_utils.metrics import significant_best
    rng = np.random.default_rng(0)
    hardness = rng.uniform(0.3, 0.9, 200)            # images differ a lot in difficulty ...
    stats = {"a": hardness + 0.05, "b": hardness, "c": hardness - 0.02}   # ... a always leads
    w = significant_best(stats, n_resamples=300)
    assert w.candidate == w.best == "a"
    assert set(w.versus) == {"b", "c"}
    np.testing.assert_allclose(w.versus["b"].difference, 0.05)
    # Paired: the per-image offset is constant, so every resample gives exactly 0.05.
    assert w.versus["b"].low == pytest.approx(0.05) and w.versus["b"].high == pytest.approx(0.05)
    np.testing.assert_allclose(w.scores["c"], hardness.mean() - 0.02)


def test_significant_best_refuses_the_bold_font_for_a_coin_flip_lead():
    from course_utils.metrics import significant_best
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.9, 100)
    noise = rng.choice([-0.05, 0.05], 100)           # a wins half the images, b the other half
    noise -= noise.mean() - 0.001                     # a leads by 0.001 overall
    w = significant_best({"a": base + noise, "b": base}, n_resamples=500)
    assert w.candidate == "a" and w.best is None
    assert w.versus["b"].low < 0 < w.versus["b"].high


def test_significant_best_with_confusion_matrices_and_lower_is_better():
    from course_utils.metrics import per_image_confusion, significant_best
    target = np.zeros((30, 4, 4), np.int64)
    target[:, :, 2:] = 1
    wrong = target.copy()
    wrong[:, 0, :] = 1 - wrong[:, 0, :]               # one row of four flipped in every image
    stats = {"perfect": per_image_confusion(target, target, 2), "wrong": per_image_confusion(wrong, target, 2)}
    w = significant_best(stats, n_resamples=200)
    assert w.best == "perfect" and w.scores["perfect"] == 1.0
    # By hand: per class 2 of 8 pixels move to the other class: IoU = 6 / (8 + 8 - 6) = 0.6.
    assert w.scores["wrong"] == pytest.approx(0.6)
    errors = {"a": np.full(30, 0.1), "b": np.full(30, 0.3)}
    assert significant_best(errors, n_resamples=50, higher_is_better=False).best == "a"


def test_significant_best_needs_two_models_with_statistics_of_the_same_images():
    from course_utils.metrics import significant_best
    with pytest.raises(ValueError, match="at least two"):
        significant_best({"a": np.ones(3)})
    with pytest.raises(ValueError, match="same N"):
        significant_best({"a": np.ones(3), "b": np.ones(4)})


# -- extra meters on the one evaluation path -------------------------------------------------------
class Shifted:
    """A 'model' whose logits are one-hot of a fixed label map (so its predictions are known)."""

    def __init__(self, pred, num_classes):
        import torch

        self.logits = torch.nn.functional.one_hot(torch.as_tensor(pred), num_classes).permute(0, 3, 1, 2).float()
        self.i = 0

    def __call__(self, images):
        out = self.logits[self.i:self.i + len(images)]
        self.i += len(images)
        return out


def test_evaluate_feeds_a_boundary_meter_the_same_counts_as_boundary_f1():
    import torch
    from torch import nn

    from course_utils.training import BoundaryMeter, evaluate

    true = np.stack([square(), square(top=3, left=9, size=6), square(top=0, left=0, size=20)])
    true[1, 0, :] = 255                                   # a void row
    pred = np.stack([square(top=6), square(top=3, left=9, size=5), np.zeros((20, 20), np.int64)])

    class Wrapper(nn.Module):                              # evaluate needs a module (eval/train mode)
        def __init__(self):
            super().__init__()
            self.fake = Shifted(pred, 2)

        def forward(self, x):
            return self.fake(x)

    images = torch.zeros(3, 3, 20, 20)
    loader = [(images[:2], torch.as_tensor(true[:2])), (images[2:], torch.as_tensor(true[2:]))]
    meter = BoundaryMeter(2.0)
    cm = evaluate(Wrapper(), loader, 2, "cpu", meters=[meter])
    assert meter.result() == pytest.approx(boundary_f1(pred, true, 2.0))
    assert meter.counts.tolist() == boundary_counts(pred, true, 2.0).sum(0).tolist()
    assert cm.total == 3 * 400 - 20                       # the void row is not counted


@pytest.mark.parametrize("rule", ["course", "davis"])
def test_a_boundary_meter_averages_per_image_when_asked(rule):
    import torch

    from course_utils.training import BoundaryMeter

    true = np.stack([square(), square(top=3, left=9, size=6), np.zeros((20, 20), np.int64)])
    true[1, 0, :] = 255                                   # a void row
    pred = np.stack([square(top=6), square(top=3, left=9, size=5), square(size=3)])
    meter = BoundaryMeter(1.0, rule=rule, average="image")
    assert math.isnan(meter.result())                     # no image yet
    for i in (slice(0, 2), slice(2, 3)):                  # two batches
        meter.update(torch.as_tensor(pred[i]), torch.as_tensor(true[i]))
    # Image 3 has no true boundary and a predicted one: its F is 0, pulling the mean down.
    per_image = [boundary_f1(p, t, 1.0, rule=rule) for p, t in zip(pred, true)]
    assert per_image[2] == 0.0
    assert meter.result() == pytest.approx(sum(per_image) / 3)
    assert meter.result() == pytest.approx(boundary_f1(pred, true, 1.0, rule=rule, average="image"))
    assert meter.counts.tolist() == boundary_counts(pred, true, 1.0, rule=rule).sum(0).tolist()
    with pytest.raises(ValueError, match="average must be one of 'dataset', 'image'"):
        BoundaryMeter(1.0, average="images")
    with pytest.raises(ValueError, match="rule must be one of 'course', 'davis'"):
        BoundaryMeter(1.0, rule="DAVIS")


def test_meters_are_summed_across_processes(tmp_path):
    # A one-process gloo group: all_reduce runs its collective (the sum of one is itself).
    import torch
    import torch.distributed as dist

    from course_utils.training import BoundaryMeter

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        meter = BoundaryMeter(1.0)
        meter.update(torch.as_tensor(square()[None]), torch.as_tensor(square(top=6)[None]))
        before = meter.counts.copy()
        meter.all_reduce()
        assert meter.counts.tolist() == before.tolist() and meter.counts.dtype == np.int64
        per_image = BoundaryMeter(1.0, average="image")
        pair = torch.as_tensor(np.stack([square(), square()]))
        per_image.update(pair, torch.as_tensor(np.stack([square(), square(top=6)])))
        before = per_image.result()
        assert per_image.all_reduce().result() == before and per_image.images == 2
    finally:
        dist.destroy_process_group()
