"""The paper's dual-task first term (``dual_task_loss(boundary="paper")``) against a direct
transcription of Gated-SCNN's formula (Takikawa et al., ICCV 2019, section 3.3):

    zeta = (1 / sqrt 2) |grad(G * p_k)|,   L = sum over p+ of |zeta - zeta_hat|

written here with plain torch ops: a Gaussian kernel built by hand as a 2-D outer product,
central differences by clamped indexing, boundary elements by max pooling. Only the
normalisation (divide by the number of true boundary elements) and the tiny constant under
the square root are taken from the implementation's documented choices.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from course_utils.labels import IGNORE_INDEX
from course_utils.losses import (GSCNNLoss, balanced_bce, cross_entropy, dual_task_loss, gradient_boundaries,
                                 label_edges)

SHIFTS = (1, 2, 4, 8)


# -- the transcription ------------------------------------------------------------------------
def hand_gaussian_2d(sigma, dtype):
    r = math.ceil(3 * sigma)
    g = [math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-r, r + 1)]
    g = [v / sum(g) for v in g]
    return torch.tensor([[a * b for b in g] for a in g], dtype=dtype), r


def ref_zeta(maps, sigma):
    """(1/sqrt 2) |grad(G * maps)| per channel; image extended by its border values."""
    n, c, h, w = maps.shape
    kernel, r = hand_gaussian_2d(sigma, maps.dtype)
    x = F.pad(maps.reshape(n * c, 1, h, w), (r, r, r, r), mode="replicate")
    s = F.conv2d(x, kernel[None, None]).reshape(n, c, h, w)
    right, left = torch.arange(1, w + 1).clamp(max=w - 1), torch.arange(-1, w - 1).clamp(min=0)
    down, up = torch.arange(1, h + 1).clamp(max=h - 1), torch.arange(-1, h - 1).clamp(min=0)
    gx = (s[..., :, right] - s[..., :, left]) / 2
    gy = (s[..., down, :] - s[..., up, :]) / 2
    return math.sqrt(0.5) * torch.sqrt(gx ** 2 + gy ** 2 + 1e-12)


def ref_boundary_elements(labels, num_classes, sigma):
    """(pixel, class) where class k's indicator is not constant within reach of grad G."""
    reach = math.ceil(3 * sigma) + 1
    onehot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2).double()
    hi = F.max_pool2d(onehot, 2 * reach + 1, stride=1, padding=reach)
    lo = -F.max_pool2d(-onehot, 2 * reach + 1, stride=1, padding=reach)
    return hi > lo


def ref_paper_term(logits, labels, tau=0.5, sigma=2.0, noise=None):
    c = logits.shape[1]
    y = logits if noise is None else logits + noise
    zeta = ref_zeta(torch.softmax(y / tau, 1), sigma)
    zeta_hat = ref_zeta(F.one_hot(labels, c).permute(0, 3, 1, 2).to(logits.dtype), sigma)
    true = ref_boundary_elements(labels, c, sigma)
    union = true | ref_boundary_elements(logits.argmax(1), c, sigma)
    return (zeta - zeta_hat).abs()[union].sum() / true.sum()


# -- label maps -------------------------------------------------------------------------------
def blocks(shift=0, n=2, h=40, w=44):
    """Four classes: a rectangle, a disc and a lower band; everything moved right by ``shift``."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w) - shift, indexing="ij")
    lab = torch.zeros(h, w, dtype=torch.long)
    lab[(x >= 8) & (x < 22) & (y >= 6) & (y < 20)] = 1
    lab[(x - 30) ** 2 + (y - 14) ** 2 < 36] = 2
    lab[y >= 28] = 3
    return lab.expand(n, h, w).clone()


def stripes(shift=0, h=24, w=96):
    """Three vertical stripes; a horizontal shift moves every boundary by ``shift``."""
    x = torch.arange(w).expand(1, h, w) - shift
    return (x >= 24).long() + (x >= 60).long()


def logits_for(labels, num_classes, scale, noise_seed=None, dtype=torch.float64):
    z = scale * F.one_hot(labels, num_classes).permute(0, 3, 1, 2).to(dtype)
    if noise_seed is not None:
        z = z + torch.randn(z.shape, generator=torch.Generator().manual_seed(noise_seed), dtype=dtype)
    return z.requires_grad_()


# -- values and gradients equal the transcription ---------------------------------------------
@pytest.mark.parametrize("sigma", [1.0, 2.0])
@pytest.mark.parametrize("shift", SHIFTS)
def test_paper_term_value_and_gradient_equal_the_transcription(shift, sigma):
    labels = blocks()
    logits = logits_for(blocks(shift), 4, scale=3.0, noise_seed=shift)
    ours = dual_task_loss(logits, labels, boundary="paper", sigma=sigma)
    ref = ref_paper_term(logits, labels, sigma=sigma)
    assert float(ref.detach()) > 0
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    g_ours, = torch.autograd.grad(ours, logits)
    g_ref, = torch.autograd.grad(ref, logits)
    assert g_ref.abs().sum() > 0
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-12)


def test_gradient_boundaries_is_the_transcribed_zeta():
    maps = torch.softmax(logits_for(blocks(3), 4, 2.0, noise_seed=0).detach(), 1)
    for sigma in (0.7, 2.0, 3.0):
        torch.testing.assert_close(gradient_boundaries(maps, sigma), ref_zeta(maps, sigma), rtol=1e-10, atol=1e-12)
    # A straight one-hot step: zeta peaks below 1/sqrt(2) and is exactly 0 away from the step.
    step = F.one_hot(stripes(), 3).permute(0, 3, 1, 2).double()
    z = gradient_boundaries(step, 2.0)
    assert 0 < float(z.max()) < math.sqrt(0.5)
    assert float(z[..., :24 - 8].max()) < 1e-5 and float(z[..., :, 24 + 8:60 - 8].max()) < 1e-5


def test_gumbel_noise_comes_from_the_generator_given():
    labels = blocks()
    logits = logits_for(blocks(2), 4, scale=3.0, noise_seed=1)
    def draw(seed):
        return dual_task_loss(logits, labels, boundary="paper", gumbel=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(draw(7), draw(7), rtol=0, atol=0)     # reproducible
    assert float(draw(7).detach()) != float(draw(8).detach())                         # random in the seed
    # The same noise in the transcription: Gumbel(0, 1) = -log(-log U).
    u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(7), dtype=logits.dtype)
    noise = -torch.log(1e-10 - torch.log(u + 1e-10))
    ours, ref = draw(7), ref_paper_term(logits, labels, noise=noise)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(ref, logits)[0],
                               rtol=1e-9, atol=1e-12)
    # Without a generator there is no noise: softmax(logits / tau), the same every call.
    torch.testing.assert_close(dual_task_loss(logits, labels, boundary="paper"), ref_paper_term(logits, labels))


# -- what the two terms do as the prediction moves away ---------------------------------------
def test_paper_term_grows_with_the_shift_where_the_course_term_saturates():
    labels = stripes()
    moved = {s: logits_for(stripes(s), 3, scale=100.0, dtype=torch.float32).detach() for s in (0, *SHIFTS, 16, 20)}
    course = {s: float(dual_task_loss(z, labels, boundary="course")) for s, z in moved.items()}
    paper = {s: float(dual_task_loss(z, labels, boundary="paper")) for s, z in moved.items()}
    assert course[0] == paper[0] == 0.0
    # The course's term: 2/3 at one pixel, then 1 (disjoint edges) for every larger shift.
    assert course[1] == pytest.approx(2 / 3) and all(course[s] == 1.0 for s in (2, 4, 8)), course
    # The paper's term (sigma 2) keeps growing over 1, 2, 4, 8 pixels...
    values = [paper[s] for s in SHIFTS]
    assert all(b > 1.3 * a for a, b in zip(values, values[1:])), paper
    # ...and saturates too, later: once the smoothed boundaries no longer overlap (about
    # 2 (3 sigma + 1) = 14 pixels) the sum is that of two separate bands, whatever the shift.
    assert paper[16] == pytest.approx(paper[20], rel=1e-6) and paper[16] > paper[8], paper


def test_a_confident_correct_prediction_costs_nothing_even_beside_void():
    labels = blocks()
    labels[:, 30:36, 5:15] = IGNORE_INDEX           # an unlabelled patch inside class 3
    logits = logits_for(blocks(), 4, scale=100.0, dtype=torch.float32)
    assert float(dual_task_loss(logits, labels, boundary="paper").detach()) == 0.0
    # Whatever is predicted on the void patch is no boundary error either.
    wild = logits.detach().clone()
    wild[:, :, 30:36, 5:15] = torch.randn(2, 4, 6, 10, generator=torch.Generator().manual_seed(0))
    assert float(dual_task_loss(wild, labels, boundary="paper")) == 0.0


# -- GSCNNLoss, defaults, bad input ------------------------------------------------------------
def test_gscnn_loss_with_the_paper_term_combines_the_parts():
    labels = blocks()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 40, 44, generator=g, requires_grad=True)
    edge = torch.randn(2, 1, 40, 44, generator=g, requires_grad=True)
    loss = GSCNNLoss(dual_weight=0.5, dual_boundary="paper", dual_tau=0.7, dual_sigma=1.5)
    total = loss({"out": logits, "edge": edge}, labels)
    valid = labels != IGNORE_INDEX
    expected = (cross_entropy(logits, labels) + balanced_bce(edge, label_edges(labels), valid)
                + 0.5 * dual_task_loss(logits, labels, edge, boundary="paper", tau=0.7, sigma=1.5))
    torch.testing.assert_close(total, expected)
    total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert set(loss.last_tensors) == {"seg", "edge", "dual"}
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in loss.last_tensors.values())
    assert "dual_boundary='paper'" in repr(loss)


def test_the_default_is_the_papers_term_and_the_loss_names_its_term():
    labels = blocks()
    logits = logits_for(blocks(2), 4, scale=3.0, noise_seed=0, dtype=torch.float32).detach()
    assert float(dual_task_loss(logits, labels)) == float(dual_task_loss(logits, labels, boundary="paper"))
    assert float(dual_task_loss(logits, labels)) != float(dual_task_loss(logits, labels, boundary="course"))
    assert float(GSCNNLoss()(logits, labels)) == float(GSCNNLoss(dual_boundary="paper")(logits, labels))
    assert repr(GSCNNLoss()) == ("GSCNNLoss(seg_weight=1.0, edge_weight=1.0, dual_weight=1.0, ignore_index=255, "
                                 "radius=1, dual_boundary='paper', dual_tau=0.5, dual_sigma=2.0, dual_gumbel=None)")
    assert repr(GSCNNLoss(dual_boundary="course")).endswith("radius=1, dual_boundary='course')")


def test_the_paper_term_runs_on_the_meta_device():
    logits = torch.empty(2, 4, 9, 11, device="meta", requires_grad=True)
    labels = torch.empty(2, 9, 11, dtype=torch.long, device="meta")
    loss = dual_task_loss(logits, labels, boundary="paper")
    loss.backward()
    assert loss.device.type == "meta" and logits.grad.device.type == "meta"


def _small():
    return torch.zeros(1, 3, 5, 5), torch.zeros(1, 5, 5, dtype=torch.long)


@pytest.mark.parametrize("kwargs, match", [
    (dict(boundary="Paper"), r"boundary must be one of 'course', 'paper'"),
    (dict(boundary="paper", tau=0), "tau must be a number > 0"),
    (dict(boundary="paper", sigma=-1.0), "sigma must be a number > 0"),
    (dict(boundary="paper", gumbel=0), "gumbel must be None .* or a torch.Generator"),
    (dict(boundary="paper", temperature=2.0), "temperature applies to boundary='course' only"),
])
def test_bad_dual_task_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dual_task_loss(*_small(), **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dual_boundary="gumbel"), r"dual_boundary must be one of 'course', 'paper'"),
    (dict(dual_tau=-0.5), "dual_tau must be a number > 0"),
    (dict(dual_sigma=0), "dual_sigma must be a number > 0"),
    (dict(dual_gumbel=42), "dual_gumbel must be None .* or a torch.Generator"),
])
def test_bad_gscnn_loss_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GSCNNLoss(**kwargs)
