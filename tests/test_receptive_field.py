"""course_utils.receptive_field against hand-worked values, a published table, and autograd.

Three independent answers must agree on random stacks: the layer-by-layer recurrence,
Araujo et al.'s closed form, and brute force (which input pixels get a non-zero gradient
from one output unit of a real PyTorch network whose weights are all positive, so no
contributions cancel).
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from course_utils import receptive_field as rfm
from course_utils.receptive_field import receptive_field


# -- random stacks -------------------------------------------------------------------------
@st.composite
def stacks(draw, max_layers=4, max_kernel=4, max_stride=3, max_dilation=3):
    """A list of ``(kind, k, s, d, p)``; pools get dilation 1 and padding <= k // 2, the
    limits PyTorch's AvgPool2d accepts."""
    layers = []
    for _ in range(draw(st.integers(1, max_layers))):
        kind = draw(st.sampled_from(["conv", "conv", "avg", "max"]))
        k = draw(st.integers(1, max_kernel))
        s = draw(st.integers(1, max_stride))
        if kind == "conv":
            d = draw(st.integers(1, max_dilation))
            p = draw(st.integers(0, 2))
        else:
            d = 1
            p = draw(st.integers(0, k // 2))
        layers.append((kind, k, s, d, p))
    return layers


def as_tuples(stack):
    return [(k, s, d, p) for _, k, s, d, p in stack]


def as_module(stack, rng, positive=True, pools="real"):
    """The stack as a float64 ``nn.Sequential`` with ReLU/BatchNorm-free positive weights."""
    mods = []
    for kind, k, s, d, p in stack:
        if kind == "conv" or pools == "conv":
            conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, bias=False).double()
            with torch.no_grad():
                w = rng.uniform(0.5, 1.5, size=(1, 1, k, k)) if positive else np.ones((1, 1, k, k))
                conv.weight.copy_(torch.from_numpy(w))
            mods.append(conv)
        elif kind == "avg":
            mods.append(nn.AvgPool2d(k, stride=s, padding=p))
        else:
            mods.append(nn.MaxPool2d(k, stride=s, padding=p, dilation=d))
    return nn.Sequential(*mods)


def input_gradient(model, x, r, c):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[0, 0, r, c], x)
    return g[0, 0].numpy()


# -- closed form == recurrence -------------------------------------------------------------
@given(stack=stacks(max_layers=10, max_kernel=7, max_stride=4, max_dilation=5))
def test_closed_form_equals_recurrence(stack):
    tuples = as_tuples(stack)
    a = receptive_field(tuples, method="recurrence")
    b = receptive_field(tuples, method="closed_form")
    assert (a.size, a.stride, a.start) == (b.size, b.stride, b.start)
    assert a.history == b.history
    assert a.history[-1].size == a.size and a.history[-1].jump == a.stride


@given(stack=stacks(max_layers=6, max_kernel=5, max_stride=3, max_dilation=3))
def test_module_walk_reads_the_same_numbers_as_the_tuples(stack):
    model = as_module(stack, np.random.default_rng(0), pools="real")
    # Shape-preserving layers and nesting must not change anything.
    wrapped = nn.Sequential(nn.Identity(), nn.Sequential(*[nn.Sequential(m, nn.ReLU(), nn.BatchNorm2d(1))
                                                            for m in model]), nn.Dropout())
    expected = receptive_field(as_tuples(stack))
    for m in (model, wrapped):
        got = receptive_field(m)
        assert (got.size, got.stride, got.start) == (expected.size, expected.stride, expected.start)


# -- brute force: the gradient of one output unit --------------------------------------------
@settings(max_examples=40)
@given(stack=stacks(), seed=st.integers(0, 2**16), extra=st.integers(0, 3))
def test_gradient_support_is_the_theoretical_field(stack, seed, extra):
    rng = np.random.default_rng(seed)
    field = receptive_field(as_tuples(stack))
    counts = rfm.path_counts(as_tuples(stack))
    pad = field.effective_padding
    h = field.size + 2 * pad + 3 * field.stride + extra
    model = as_module(stack, rng, positive=True, pools="real")
    # Distinct positive inputs: AvgPool passes gradient to every pixel of its window.
    x = torch.from_numpy(rng.uniform(0.5, 1.5, size=(1, 1, h, h)))
    n_out = model(x).shape[-1]
    interior = [u for u in range(n_out) if field.bounds(u)[0] >= 0 and field.bounds(u)[1] <= h - 1]
    assert interior, "the test input should leave at least one unit whose field is inside"
    only_avg = all(kind != "max" for kind, *_ in stack)
    for u in {interior[0], interior[-1]}:
        g = input_gradient(model, x, u, interior[0])
        rows = np.flatnonzero(g.any(axis=1))
        cols = np.flatnonzero(g.any(axis=0))
        lo_r, hi_r = field.bounds(u)
        lo_c, hi_c = field.bounds(interior[0])
        # Everything the unit depends on lies inside its theoretical field.
        assert rows.min() >= lo_r and rows.max() <= hi_r and cols.min() >= lo_c and cols.max() <= hi_c
        if only_avg:
            # Positive weights, no max: exactly the sampled positions, holes included.
            expected = np.zeros((h, h), bool)
            expected[lo_r:hi_r + 1, lo_c:hi_c + 1] = np.outer(counts, counts) > 0
            np.testing.assert_array_equal(g != 0, expected)
            assert (rows.min(), rows.max()) == (lo_r, hi_r)


@settings(max_examples=30)
@given(stack=stacks(max_layers=3, max_kernel=4, max_stride=2, max_dilation=3))
def test_path_counts_are_the_gradient_of_an_all_ones_network(stack):
    """With every weight 1 (pools as 1-weight convolutions) the gradient *counts* paths."""
    field = receptive_field(as_tuples(stack))
    pad = field.effective_padding
    h = field.size + 2 * pad + 2 * field.stride
    model = as_module(stack, None, positive=False, pools="conv")
    u = -(-pad // field.stride)  # the first unit whose field starts inside the input
    lo, hi = field.bounds(u)
    g = input_gradient(model, torch.ones(1, 1, h, h, dtype=torch.float64), u, u)
    np.testing.assert_array_equal(g[lo:hi + 1, lo:hi + 1], rfm.sampled_positions(as_tuples(stack)))
    assert g.sum() == rfm.sampled_positions(as_tuples(stack)).sum()


def test_effective_receptive_field_matches_autograd_and_counts():
    torch.manual_seed(0)
    stack = [("conv", 3, 1, d, d) for d in (1, 2, 3)]
    model = as_module(stack, None, positive=False)
    erf = rfm.effective_receptive_field(model, (4, 1, 21, 21))
    expected = np.zeros((21, 21))
    expected[4:17, 4:17] = rfm.sampled_positions(as_tuples(stack))  # field 13 centred on 10
    np.testing.assert_allclose(erf, expected, atol=1e-12)
    # A nonlinear model: the function is the mean |gradient| over its random inputs.
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1))
    x = torch.randn(5, 2, 9, 11, generator=torch.Generator().manual_seed(7))
    xg = x.clone().requires_grad_(True)
    net(xg)[:, :, 4, 5].sum().backward()
    ref = xg.grad.abs().sum(1).mean(0).numpy()
    np.testing.assert_allclose(rfm.effective_receptive_field(net, (5, 2, 9, 11), seed=7), ref, rtol=1e-6)
    np.testing.assert_allclose(rfm.effective_receptive_field(net, (5, 2, 9, 11), inputs=x), ref, rtol=1e-6)
    before = [p.grad for p in net.parameters()]
    rfm.effective_receptive_field(net, (2, 9, 11))
    assert [p.grad for p in net.parameters()] == before
    corner = rfm.effective_receptive_field(net, (2, 9, 11), center=(0, 0))
    assert corner[3:, :].sum() == 0 and corner[:, 3:].sum() == 0 and corner[0, 0] > 0


def test_erf_extent():
    erf = np.zeros((9, 9))
    erf[4, 4] = 1
    assert rfm.erf_extent(erf) == 1
    erf[2:7, 2:7] = 1
    assert rfm.erf_extent(erf, mass=1.0) == 5
    assert rfm.erf_extent(erf, mass=0.3) == 3  # 9 of 25 cells


# -- dilation == zero-inserted kernel ------------------------------------------------------
@given(kh=st.integers(1, 4), kw=st.integers(1, 4), d=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 3), cin=st.integers(1, 3), cout=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_dilated_conv_is_conv_with_zero_inserted_kernel(kh, kw, d, s, p, cin, cout, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(cout, cin, kh, kw, generator=g, dtype=torch.float64)
    size = d * (max(kh, kw) - 1) + 1 + seed % 5
    x = torch.randn(1, cin, size, size + 1, generator=g, dtype=torch.float64)
    big = rfm.dilate_kernel(w, d)
    assert big.shape[-2:] == (rfm.effective_kernel_size(kh, d), rfm.effective_kernel_size(kw, d))
    ref = F.conv2d(x, w, stride=s, padding=p, dilation=d)
    torch.testing.assert_close(F.conv2d(x, big, stride=s, padding=p), ref, rtol=0, atol=1e-12)
    # The NumPy path, and a hand loop as a reference that uses neither.
    w2 = w[0, 0].numpy()
    big2 = rfm.dilate_kernel(w2, d)
    np.testing.assert_array_equal(big2, big[0, 0].numpy())
    x2 = x[0, 0].numpy()
    oh, ow = x2.shape[0] - d * (kh - 1), x2.shape[1] - d * (kw - 1)
    loop = np.array([[sum(w2[a, b] * x2[i + d * a, j + d * b] for a in range(kh) for b in range(kw))
                      for j in range(ow)] for i in range(oh)])
    np.testing.assert_allclose(loop, F.conv2d(x[:, :1], w[:1, :1], dilation=d)[0, 0].numpy(), atol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("d", [1, 2, 3, 6])
def test_same_padding_keeps_the_size(k, d):
    p = rfm.same_padding(k, d)
    assert p == d * (k - 1) // 2
    x = torch.randn(1, 1, 13, 17)
    assert F.conv2d(x, torch.ones(1, 1, k, k), padding=p, dilation=d).shape == x.shape


# -- values by hand and from a published table ---------------------------------------------
def test_hand_worked_values():
    three = receptive_field([(3, 1, 1)] * 3)
    assert (three.size, three.stride, three.start) == (7, 1, 3.0)
    assert [h.size for h in three.history] == [3, 5, 7]
    assert receptive_field([(3, 1, 1, 1)] * 3).start == 0.0  # 'same' padding centres on pixel 0
    assert receptive_field([(3, 1, d) for d in (1, 2, 4, 8)]).size == 31
    pools = receptive_field([(2, 2, 1)] * 2)
    assert (pools.size, pools.stride, pools.start) == (4, 4, 1.5)
    assert pools.bounds(0) == (0, 3) and pools.bounds(2) == (8, 11)
    assert receptive_field([]).size == 1
    # Layer-1 units -1, 0, 1 (one of padding) cover input pixels -1 .. 5.
    assert receptive_field([(5, 1, 1), (3, 2, 1, 1)]).bounds(0) == (-1, 5)
    # A pad layer shifts the centre like a convolution's own padding.
    a = receptive_field(nn.Sequential(nn.ZeroPad2d(2), nn.Conv2d(1, 1, 5)))
    assert (a.size, a.start) == (5, 0.0)
    assert receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2, padding="same"))).start == 0.0
    assert receptive_field(nn.Sequential(nn.Conv2d(1, 1, 4, padding="same"))).start == 0.5
    dilated_pool = receptive_field(nn.Sequential(nn.MaxPool2d(3, stride=1, dilation=2)))
    assert (dilated_pool.size, dilated_pool.start) == (5, 2.0)


def test_published_table_vgg16_and_alexnet():
    """RF / effective stride / effective padding as published with Araujo et al.'s library
    (github.com/google-research/receptive_field): vgg_16 212 / 32 / 90, alexnet_v2 195 / 32 / 64."""
    vgg = []
    for n in (2, 2, 3, 3, 3):
        vgg += [(3, 1, 1, 1)] * n + [(2, 2, 1, 0)]
    alex = [(11, 4, 1, 0), (3, 2, 1, 0), (5, 1, 1, 2), (3, 2, 1, 0),
            (3, 1, 1, 1), (3, 1, 1, 1), (3, 1, 1, 1), (3, 2, 1, 0)]
    for layers, expected in ((vgg, (212, 32, 90)), (alex, (195, 32, 64))):
        for method in rfm.METHODS:
            f = receptive_field(layers, method=method)
            assert (f.size, f.stride, f.effective_padding) == expected


def test_gridding_and_hybrid_schedule():
    grid = rfm.path_counts([(3, 1, 2)] * 3)
    assert len(grid) == 13 and np.count_nonzero(grid) == 7  # odd offsets are never sampled
    hybrid = rfm.path_counts([(3, 1, d) for d in (1, 2, 3)])
    assert len(hybrid) == 13 and np.all(hybrid > 0)
    assert rfm.sampled_positions([(3, 1, 2)] * 3).astype(bool).sum() == 49


def test_axis_for_rectangular_layers():
    m = nn.Sequential(nn.Conv2d(1, 1, (3, 5), stride=(1, 2)), nn.MaxPool2d((2, 1)))
    assert receptive_field(m, axis=0).size == 4
    assert receptive_field(m, axis=1).size == 5 and receptive_field(m, axis=1).stride == 2


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, name", [((0, 1, 1), "kernel_size"), ((3, 0, 1), "stride"),
                                         ((3, 1, 0), "dilation"), ((3, 1, 1, -1), "padding"),
                                         ((3.0, 1, 1), "kernel_size"), ((3, True, 1), "stride")])
def test_bad_tuple_values_name_the_parameter(layer, name):
    with pytest.raises(ValueError, match=f"layer 1: {name} must be an integer"):
        receptive_field([(3, 1, 1), layer])
    with pytest.raises(ValueError, match=name):
        rfm.path_counts([layer])


def test_bad_module_values_name_the_layer_and_parameter():
    conv = nn.Conv2d(1, 1, 3)
    conv.stride = (0, 0)
    with pytest.raises(ValueError, match=r"layer 1 \(Conv2d\): stride must be an integer >= 1"):
        receptive_field(nn.Sequential(nn.ReLU(), conv))
    conv = nn.Conv2d(1, 1, 3)
    conv.dilation = (0, 0)
    with pytest.raises(ValueError, match="dilation must be an integer >= 1"):
        receptive_field(nn.Sequential(conv))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


@pytest.mark.parametrize("module, why", [
    (nn.Linear(4, 4), "fully connected"),
    (nn.AdaptiveAvgPool2d(1), "depends on the input size"),
    (nn.ConvTranspose2d(1, 1, 2, stride=2), "raises the resolution"),
    (nn.Upsample(scale_factor=2), "raises the resolution"),
    (nn.Conv1d(1, 1, 3), "not a 2-D layer"),
    (Residual(), "several paths"),
    (nn.ModuleList([nn.ReLU()]), "no order"),
    (nn.LSTM(2, 2), "unknown"),
])
def test_unsupported_layers_say_which_and_why(module, why):
    with pytest.raises(ValueError, match=rf"layer 1\.0 \({type(module).__name__}\) is not supported: .*{why}"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Sequential(module)))


def test_other_bad_input():
    with pytest.raises(ValueError, match="differs between height and width; pass axis"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, (3, 5))))
    with pytest.raises(ValueError, match="axis must be an integer in"):
        receptive_field([(3, 1, 1)], axis=2)
    with pytest.raises(ValueError, match="method must be one of"):
        receptive_field([(3, 1, 1)], method="guess")
    with pytest.raises(ValueError, match=r"layer 0 must be a \(kernel_size, stride, dilation\)"):
        receptive_field([(3, 1)])
    with pytest.raises(ValueError, match="layers must be an nn.Sequential or a list"):
        receptive_field(3)
    with pytest.raises(ValueError, match="dilation must be an integer >= 1"):
        rfm.dilate_kernel(np.ones((3, 3)), 0)
    with pytest.raises(ValueError, match="kernel must be a 2-D"):
        rfm.dilate_kernel(np.ones(3), 2)
    with pytest.raises(ValueError, match="kernel_size must be an integer >= 1"):
        rfm.effective_kernel_size(0, 1)
    with pytest.raises(ValueError, match="no symmetric padding"):
        rfm.same_padding(2, 1)
    with pytest.raises(ValueError, match="index must be an integer >= 0"):
        receptive_field([(3, 1, 1)]).bounds(-1)
    net = nn.Sequential(nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="input_shape must be"):
        rfm.effective_receptive_field(net, (8, 8))
    with pytest.raises(ValueError, match="input_shape H must be an integer >= 1"):
        rfm.effective_receptive_field(net, (1, 0, 8))
    with pytest.raises(ValueError, match="center row must be an integer in"):
        rfm.effective_receptive_field(net, (1, 8, 8), center=(9, 0))
    with pytest.raises(ValueError, match="inputs must have shape"):
        rfm.effective_receptive_field(net, (1, 8, 8), inputs=torch.zeros(1, 1, 7, 7))
    with pytest.raises(ValueError, match="must map"):
        rfm.effective_receptive_field(nn.Sequential(nn.Flatten()), (1, 8, 8))
    with pytest.raises(ValueError, match="mass must be in"):
        rfm.erf_extent(np.ones((3, 3)), mass=0)
    with pytest.raises(ValueError, match="all zeros"):
        rfm.erf_extent(np.zeros((3, 3)))
