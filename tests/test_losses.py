"""course_utils.losses: cross-entropy, edges from labels, HED-balanced BCE, the dual-task loss."""
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from course_utils.labels import IGNORE_INDEX
from course_utils.losses import (balanced_bce, balanced_bce_weights, cross_entropy,
                                 label_edges, soft_boundaries)
from course_utils.losses import GSCNNLoss as _GSCNNLoss, dual_task_loss as _dual_task_loss

# The course's dual-task term throughout this file, checked against its own reference below;
# the paper's term (the default) is tested in test_losses_paper.py.
dual_task_loss = functools.partial(_dual_task_loss, boundary="course")
GSCNNLoss = functools.partial(_GSCNNLoss, dual_boundary="course")


def brute_edges(lab, radius, void=IGNORE_INDEX):
    """Reference: a pixel is an edge when its window holds two different non-void labels."""
    h, w = lab.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            if lab[i, j] == void:
                continue
            win = lab[max(0, i - radius):i + radius + 1, max(0, j - radius):j + radius + 1]
            out[i, j] = len(set(win[win != void].tolist())) > 1
    return out


def confident(labels, num_classes, scale=100.0):
    return scale * F.one_hot(labels.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).float()


def test_cross_entropy_by_hand_skips_void():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])      # (1, 2, 1, 2)
    labels = torch.tensor([[[0, IGNORE_INDEX]]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))       # only the first pixel counts
    assert math.isclose(float(cross_entropy(logits, labels)), expected, rel_tol=1e-6)


def test_label_edges_by_hand():
    lab = torch.tensor([[[0, 0, 1, 1],
                         [0, 0, 1, 1],
                         [0, 0, 1, 1]]])
    expected = torch.tensor([[[0, 1, 1, 0]] * 3], dtype=torch.float32)
    torch.testing.assert_close(label_edges(lab), expected)
    assert label_edges(lab, radius=2).min() == 1          # every window now spans both classes
    # Void makes no edges: its border with a class is not an annotated boundary.
    void = torch.tensor([[[0, 0, IGNORE_INDEX, IGNORE_INDEX]]])
    assert label_edges(void).sum() == 0


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(1, 7), radius=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_label_edges_and_soft_boundaries_match_a_brute_force_reference(h, w, radius, seed):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 3, (h, w))
    lab[rng.random((h, w)) < 0.15] = IGNORE_INDEX
    ref = brute_edges(lab, radius)
    labels = torch.from_numpy(lab)[None]
    np.testing.assert_array_equal(label_edges(labels, radius)[0].numpy(), ref)
    # The soft boundaries of a one-hot prediction are the hard edges of its labels.
    clean = torch.from_numpy(np.where(lab == IGNORE_INDEX, 0, lab))[None]
    onehot = F.one_hot(clean, 3).permute(0, 3, 1, 2).float()
    np.testing.assert_array_equal(soft_boundaries(onehot, radius)[0].numpy(),
                                  brute_edges(clean[0].numpy(), radius))
    # With the void mask, whatever is predicted at void pixels is left out, as in label_edges.
    np.testing.assert_array_equal(soft_boundaries(onehot, radius, labels != IGNORE_INDEX)[0].numpy(), ref)


def test_balanced_bce_weights_by_hand():
    targets = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])            # 1 edge pixel of 4
    w = balanced_bce_weights(targets)
    torch.testing.assert_close(w, torch.tensor([[[0.75, 0.25, 0.25, 0.25]]]))
    # Zero logits: BCE = log 2 everywhere; weighted sum 1.5 log 2 over 4 pixels.
    loss = balanced_bce(torch.zeros(1, 1, 1, 4), targets)
    assert math.isclose(float(loss), 1.5 * math.log(2) / 4, rel_tol=1e-6)
    # Invalid pixels get no weight and do not count.
    valid = torch.tensor([[[True, True, False, False]]])
    torch.testing.assert_close(balanced_bce_weights(targets, valid), torch.tensor([[[0.5, 0.5, 0.0, 0.0]]]))


def test_balanced_bce_gives_both_classes_the_same_total_weight():
    rng = np.random.default_rng(1)
    targets = torch.from_numpy((rng.random((3, 9, 11)) < 0.1).astype(np.float32))
    w = balanced_bce_weights(targets)
    pos, neg = (w * targets).sum((1, 2)), (w * (1 - targets)).sum((1, 2))
    torch.testing.assert_close(pos, neg)


def test_balanced_bce_per_image_mean_against_a_loop():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 1, 5, 6), (torch.rand(2, 5, 6) < 0.3).float()
    per_image = []
    for x, t in zip(logits[:, 0], targets):
        beta = 1 - t.mean()
        bce = -(t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x))
        per_image.append((torch.where(t > 0, beta, 1 - beta) * bce).mean())
    torch.testing.assert_close(balanced_bce(logits, targets), torch.stack(per_image).mean())


def scene(n=2, h=12, w=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, h, w, dtype=torch.long)
    labels[:, :, w // 2:] = 1
    labels[:, h // 2:, :] = 2
    labels[:, 2:5, 2:5] = torch.randint(0, 3, (1,), generator=g)
    labels[:, 0, 0] = IGNORE_INDEX
    return labels


def test_dual_task_loss_is_zero_for_a_confident_perfect_prediction():
    labels = scene()
    logits = confident(labels, 3)
    edge_logits = 50.0 * (2 * label_edges(labels) - 1)[:, None]
    assert float(dual_task_loss(logits, labels)) == 0.0
    assert float(dual_task_loss(logits, labels, edge_logits)) < 1e-6


def test_dual_task_loss_is_positive_when_boundaries_disagree():
    labels = scene()
    shifted = torch.roll(labels.clamp(0, 2), 2, dims=2)          # boundaries moved by two columns
    loss = dual_task_loss(confident(shifted, 3), labels)
    assert float(loss) > 0.1
    # A prediction that misses the boundary (a single class everywhere) is penalised too.
    assert float(dual_task_loss(confident(torch.zeros_like(labels), 3), labels)) > 0.5
    # A correct but hesitant prediction has faint boundaries: the loss falls as it grows confident.
    values = [float(dual_task_loss(confident(labels, 3, scale=s), labels)) for s in (1.0, 3.0, 100.0)]
    assert values[0] > values[1] > values[2] == 0.0


def test_dual_task_loss_edge_term_penalises_errors_at_predicted_edges():
    labels = scene()
    wrong = confident(torch.roll(labels.clamp(0, 2), 2, dims=2), 3, scale=3.0)
    all_edges = torch.full((2, 1, 12, 14), 10.0)
    no_edges = torch.full((2, 1, 12, 14), -10.0)
    assert float(dual_task_loss(wrong, labels, all_edges)) > float(dual_task_loss(wrong, labels, no_edges)) + 0.1
    torch.testing.assert_close(dual_task_loss(wrong, labels, no_edges), dual_task_loss(wrong, labels))


def test_dual_task_gradient_flows_to_the_logits():
    labels = scene()
    logits = torch.randn(2, 3, 12, 14, requires_grad=True)
    loss = dual_task_loss(logits, labels, torch.randn(2, 1, 12, 14))
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # One gradient step on the dual-task loss alone moves the predicted boundaries towards the true ones.
    x = torch.randn(2, 3, 12, 14, requires_grad=True)
    opt = torch.optim.SGD([x], lr=5.0)
    first = float(dual_task_loss(x, labels).detach())
    for _ in range(20):
        opt.zero_grad()
        dual_task_loss(x, labels).backward()
        opt.step()
    assert float(dual_task_loss(x, labels).detach()) < first


def test_gscnn_loss_combines_the_parts():
    labels = scene()
    torch.manual_seed(0)
    logits, edge = torch.randn(2, 3, 12, 14), torch.randn(2, 1, 12, 14)
    loss = GSCNNLoss(seg_weight=1.0, edge_weight=2.0, dual_weight=0.5)
    total = loss({"out": logits, "edge": edge}, labels)
    valid = labels != IGNORE_INDEX
    expected = (cross_entropy(logits, labels) + 2.0 * balanced_bce(edge, label_edges(labels), valid)
                + 0.5 * dual_task_loss(logits, labels, edge))
    torch.testing.assert_close(total, expected)
    assert set(loss.last) == {"seg", "edge", "dual"}
    # Plain logits: cross-entropy (+ the segmentation-boundary term); no edge term.
    only_ce = GSCNNLoss(dual_weight=0.0)(logits, labels)
    torch.testing.assert_close(only_ce, cross_entropy(logits, labels))
    # Perfect, confident outputs: nothing left to learn.
    perfect = {"out": confident(labels, 3), "edge": 50.0 * (2 * label_edges(labels) - 1)[:, None]}
    assert float(GSCNNLoss()(perfect, labels)) < 1e-6


@pytest.mark.parametrize("call, match", [
    (lambda: cross_entropy(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 4, dtype=torch.long)), "logits"),
    (lambda: label_edges(torch.zeros(3, 3, dtype=torch.long)), "labels"),
    (lambda: label_edges(torch.zeros(1, 3, 3, dtype=torch.long), radius=0), "radius"),
    (lambda: balanced_bce(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3)), "one channel"),
    (lambda: dual_task_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long), temperature=0),
     "temperature"),
    (lambda: GSCNNLoss(edge_weight=-1), "edge_weight"),
    (lambda: GSCNNLoss()({"edge": torch.zeros(1, 1, 3, 3)}, torch.zeros(1, 3, 3, dtype=torch.long)), "out"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- the fast implementation against the original one (kept here as the reference) ----------
# The original formulation (max pooling with autograd through every class map, two
# separate cross-entropies, ground-truth edges computed twice), as committed before the
# speed-up: the new code must give the same losses and the same gradients.
def ref_window_max(x, radius):
    return F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius)


def ref_label_edges(labels, radius=1, ignore_index=IGNORE_INDEX):
    lab = labels[:, None].float()
    valid = lab != ignore_index
    inf = torch.tensor(float("inf"))
    hi = ref_window_max(torch.where(valid, lab, -inf), radius)
    lo = -ref_window_max(torch.where(valid, -lab, -inf), radius)
    return ((hi > lo) & valid)[:, 0].float()


def ref_soft_boundaries(probs, radius=1, valid=None):
    if valid is None:
        return (ref_window_max(probs, radius) + ref_window_max(-probs, radius)).amax(1)
    v = valid[:, None]
    low = torch.tensor(float("-inf"), dtype=probs.dtype)
    spread = ref_window_max(torch.where(v, probs, low), radius) + ref_window_max(torch.where(v, -probs, low), radius)
    return torch.where(valid, spread.amax(1), torch.zeros((), dtype=probs.dtype))


def ref_dual_task_loss(seg_logits, labels, edge_logits=None, ignore_index=IGNORE_INDEX, radius=1, temperature=1.0,
                       edge_threshold=0.8):
    valid = labels != ignore_index
    gt = ref_label_edges(labels, radius, ignore_index)
    soft = ref_soft_boundaries(torch.softmax(seg_logits / temperature, 1), radius, valid)
    with torch.no_grad():
        hard = ref_label_edges(torch.where(valid, seg_logits.argmax(1), ignore_index), radius, ignore_index)
        union = ((gt > 0) | (hard > 0)) & valid
    loss = ((soft - gt).abs() * valid).sum() / union.sum().clamp_min(1)
    if edge_logits is not None:
        mask = (torch.sigmoid(edge_logits[:, 0].detach()) > edge_threshold) & valid
        ce = F.cross_entropy(seg_logits, labels.clamp(0, seg_logits.shape[1] - 1), reduction="none")
        loss = loss + (ce * mask).sum() / mask.sum().clamp_min(1)
    return loss


def ref_gscnn_loss(logits, edge, labels):
    valid = labels != IGNORE_INDEX
    seg = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    bce = balanced_bce(edge, ref_label_edges(labels), valid)
    return seg + bce + ref_dual_task_loss(logits, labels, edge), (seg, bce)


def random_case(seed, n=2, c=5, h=17, w=23, void=0.1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n, h, w), generator=g)
    # Blocky labels (as in scenes) plus scattered void pixels.
    labels = labels[:, ::3, ::3].repeat_interleave(3, 1).repeat_interleave(3, 2)[:, :h, :w].contiguous()
    labels[torch.rand(n, h, w, generator=g) < void] = IGNORE_INDEX
    logits = (3 * torch.randn(n, c, h, w, generator=g, dtype=dtype)).requires_grad_()
    edge = (2 * torch.randn(n, 1, h, w, generator=g, dtype=dtype)).requires_grad_()
    return logits, edge, labels


@settings(max_examples=25)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_window_max_is_max_pooling(h, w, radius, seed):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    x[x > 1.5] = float("-inf")
    from course_utils.losses import _window_max
    torch.testing.assert_close(_window_max(x, radius), ref_window_max(x, radius), rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("radius", [1, 2])
def test_soft_boundaries_value_and_gradient_match_the_max_pool_formulation(seed, radius):
    logits, _, labels = random_case(seed)
    valid = labels != IGNORE_INDEX
    for v in (None, valid):
        probs = torch.softmax(logits, 1)
        weights = torch.rand(labels.shape, generator=torch.Generator().manual_seed(seed), dtype=probs.dtype)
        new = soft_boundaries(probs, radius, v)
        ref = ref_soft_boundaries(torch.softmax(logits, 1), radius, v)
        torch.testing.assert_close(new, ref, rtol=0, atol=0)
        g_new, = torch.autograd.grad((new * weights).sum(), logits)
        g_ref, = torch.autograd.grad((ref * weights).sum(), logits)
        torch.testing.assert_close(g_new, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_gscnn_loss_value_and_gradients_match_the_original_implementation(seed):
    logits, edge, labels = random_case(seed, dtype=torch.float32)
    loss = GSCNNLoss()
    new = loss({"out": logits, "edge": edge}, labels)
    ref, (seg, bce) = ref_gscnn_loss(logits, edge, labels)
    torch.testing.assert_close(new, ref)
    g_new = torch.autograd.grad(new, (logits, edge))
    g_ref = torch.autograd.grad(ref, (logits, edge))
    for a, b in zip(g_new, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    # The parts are kept as tensors (no host sync in the step) and read as floats.
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in loss.last_tensors.values())
    assert loss.last["seg"] == pytest.approx(float(seg.detach()), rel=1e-5)
    assert loss.last["edge"] == pytest.approx(float(bce.detach()), rel=1e-5)
    # dual_task_loss on its own agrees with the reference too, with and without edges.
    for e in (None, edge):
        torch.testing.assert_close(dual_task_loss(logits, labels, e), ref_dual_task_loss(logits, labels, e))


def test_every_loss_runs_on_the_meta_device():
    # No tensor created on the CPU inside the losses and no value read back: the same
    # code then runs on any device without a host sync per step.
    n, c, h, w = 2, 4, 9, 11
    logits = torch.empty(n, c, h, w, device="meta", requires_grad=True)
    edge = torch.empty(n, 1, h, w, device="meta", requires_grad=True)
    labels = torch.empty(n, h, w, dtype=torch.long, device="meta")
    parts = [cross_entropy(logits, labels), label_edges(labels), balanced_bce(edge, label_edges(labels)),
             soft_boundaries(torch.softmax(logits, 1), 1, labels != IGNORE_INDEX), dual_task_loss(logits, labels, edge)]
    loss = GSCNNLoss()
    total = loss({"out": logits, "edge": edge}, labels)
    total.backward()
    assert all(p.device.type == "meta" for p in parts + [total, logits.grad, edge.grad])
    assert set(loss.last_tensors) == {"seg", "edge", "dual"}


def aten_ops(fn):
    """Names of the ATen operators ``fn()`` dispatches, backward passes included."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func._schema.name)
            return func(*args, **(kwargs or {}))

    with Record() as record:
        fn()
    return record.names


def test_the_gscnn_loss_needs_no_take_or_put():
    # Tensor.take's backward is put_, which MPS lacks in older releases: the loss must train
    # with operators every backend has (its values and gradients are checked above).
    logits, edge, labels = random_case(0, dtype=torch.float32)
    ops = aten_ops(lambda: GSCNNLoss()({"out": logits, "edge": edge}, labels).backward())
    assert "aten::gather" in ops or "aten::index" in ops          # the recorder sees the look-up
    assert not {"aten::take", "aten::put", "aten::put_"} & ops, sorted(ops)
