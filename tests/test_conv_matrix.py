"""course_utils.conv_matrix against hand-worked matrices, PyTorch's ops and autograd."""
import time

import numpy as np
import pytest
import scipy.sparse
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from course_utils import conv_matrix as cm
from course_utils._checks import check_hw


def t4(a, dtype=torch.float64):
    return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)[None, None]


# -- a valid single-channel convolution, drawn at random --------------------------------
@st.composite
def conv_configs(draw, max_size=9):
    """Kernel, input shape and per-axis stride/padding/dilation that PyTorch accepts."""
    cfg = {"stride": [], "padding": [], "dilation": []}
    kshape, shape = [], []
    for _ in range(2):
        k = draw(st.integers(1, 4))
        d = draw(st.integers(1, 3))
        p = draw(st.integers(0, 3))
        s = draw(st.integers(1, 4))
        # The dilated kernel must fit in the padded input.
        n = draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), max(max_size, d * (k - 1) + 1)))
        kshape.append(k), shape.append(n)
        cfg["stride"].append(s), cfg["padding"].append(p), cfg["dilation"].append(d)
    # Half the time as ints (square everything), to exercise both spellings.
    if draw(st.booleans()):
        kshape, shape = [kshape[0]] * 2, [shape[0]] * 2
        cfg = {name: v[0] for name, v in cfg.items()}
    else:
        cfg = {name: tuple(v) for name, v in cfg.items()}
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    return rng.normal(size=tuple(kshape)), tuple(shape), cfg, rng


# -- hand-worked ------------------------------------------------------------------------
def test_4x4_input_3x3_kernel_by_hand():
    k = np.arange(1.0, 10.0).reshape(3, 3)
    c = cm.conv2d_matrix(k, (4, 4))
    assert c.shape == (4, 16)
    # Output (0, 0) reads rows 0..2, columns 0..2 of the 4-wide input.
    np.testing.assert_array_equal(c[0], [1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0, 0, 0, 0, 0])
    # Output (1, 1) is the same pattern shifted by one row (4) and one column (1).
    np.testing.assert_array_equal(c[3], np.roll(c[0], 5))
    c2 = cm.conv2d_matrix(k, (4, 4), stride=2, padding=1)
    assert c2.shape == (4, 16)
    # Output (0, 0) with padding 1 sees the kernel's lower-right 2x2 on pixels (0..1, 0..1).
    np.testing.assert_array_equal(c2[0], [5, 6, 0, 0, 8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])


def test_overlap_counts_by_hand():
    # Input pixel i sends taps to i*s .. i*s + k - 1.
    np.testing.assert_array_equal(cm.overlap_count(3, 2, input_size=4), [1, 1, 2, 1, 2, 1, 2, 1, 1])
    np.testing.assert_array_equal(cm.overlap_count(4, 2, input_size=4), [1, 1, 2, 2, 2, 2, 2, 2, 1, 1])
    np.testing.assert_array_equal(cm.overlap_period(3, 2), [2, 1])
    np.testing.assert_array_equal(cm.overlap_period(4, 2), [2, 2])
    np.testing.assert_array_equal(cm.overlap_period(5, 3), [2, 2, 1])
    two_d = cm.overlap_count(3, 2, input_size=4, ndim=2)
    assert two_d.shape == (9, 9) and two_d.max() == 4 and two_d.min() == 1
    np.testing.assert_array_equal(two_d, np.outer(two_d[0], two_d[0]))


def test_size_formulas_by_hand():
    assert cm.conv_output_size(4, 3) == 2
    assert cm.conv_output_size(5, 3, stride=2) == 2 and cm.conv_output_size(6, 3, stride=2) == 2
    assert cm.conv_output_size(7, 3, dilation=2, padding=1) == 5
    assert cm.conv_output_size((4, 9), (3, 1), stride=(1, 2)) == (2, 5)
    assert cm.conv_transpose_output_size(2, 3, stride=2) == 5
    assert cm.conv_transpose_output_size(2, 3, stride=2, output_padding=1) == 6
    assert cm.conv_transpose_output_size(4, 4, stride=2, padding=1) == 8  # the classic x2 layer
    # 5 and 6 both give 2 at stride 2: output_padding picks which one comes back.
    assert cm.matching_output_padding(5, 3, stride=2) == 0 and cm.matching_output_padding(6, 3, stride=2) == 1


def test_zero_insertion_steps_by_hand():
    steps = cm.conv_transpose_zero_insert([[1.0, 2.0], [3.0, 4.0]], np.arange(9.0).reshape(3, 3),
                                          stride=2, padding=1, return_steps=True)
    np.testing.assert_array_equal(steps.inserted, [[1, 0, 2], [0, 0, 0], [3, 0, 4]])
    assert steps.padded.shape == (5, 5)  # pad by d(k-1) - p = 1 on each side
    np.testing.assert_array_equal(steps.flipped_kernel, np.arange(9.0)[::-1].reshape(3, 3))
    assert steps.output.shape == (3, 3)


# -- against PyTorch -------------------------------------------------------------------
@given(conv_configs())
def test_matrix_times_x_is_conv2d(config):
    k, shape, cfg, rng = config
    x = rng.normal(size=shape)
    ref = F.conv2d(t4(x), t4(k), **cfg)[0, 0].numpy()
    c = cm.conv2d_matrix(k, shape, **cfg)
    assert c.shape == (ref.size, x.size)
    np.testing.assert_allclose(c @ x.ravel(), ref.ravel(), atol=1e-12)
    assert cm.conv2d_output_shape(k, shape, **cfg) == ref.shape
    sparse = cm.conv2d_matrix(k, shape, sparse=True, **cfg)
    assert scipy.sparse.issparse(sparse) and sparse.format == "csr" and sparse.has_canonical_format
    np.testing.assert_array_equal(sparse.toarray(), c)


@given(conv_configs())
def test_transpose_is_conv_transpose2d(config):
    k, shape, cfg, rng = config
    c = cm.conv2d_matrix(k, shape, **cfg)
    oh, ow = cm.conv2d_output_shape(k, shape, **cfg)
    y = rng.normal(size=(oh, ow))
    op = cm.matching_output_padding(shape, k.shape, **cfg)
    ref = F.conv_transpose2d(t4(y), t4(k), output_padding=op, **cfg)[0, 0].numpy()
    assert ref.shape == shape
    np.testing.assert_allclose(c.T @ y.ravel(), ref.ravel(), atol=1e-12)


@given(conv_configs())
def test_input_gradient_of_conv2d_is_the_transpose(config):
    k, shape, cfg, rng = config
    x = t4(rng.normal(size=shape)).requires_grad_(True)
    y = F.conv2d(x, t4(k), **cfg)
    g = rng.normal(size=tuple(y.shape[2:]))
    y.backward(t4(g))
    c = cm.conv2d_matrix(k, shape, **cfg)
    np.testing.assert_allclose(x.grad[0, 0].numpy().ravel(), c.T @ g.ravel(), atol=1e-12)


@given(conv_configs(), st.integers(0, 3))
def test_zero_insertion_view_is_conv_transpose2d(config, extra):
    k, _, cfg, rng = config
    y = rng.normal(size=tuple(rng.integers(1, 6, size=2)))
    s2, d2 = check_hw("stride", cfg["stride"]), check_hw("dilation", cfg["dilation"])
    op = tuple(min(extra, max(s, d) - 1) for s, d in zip(s2, d2))  # any op PyTorch allows
    try:
        ref = F.conv_transpose2d(t4(y), t4(k), output_padding=op, **cfg)[0, 0].numpy()
    except RuntimeError:  # padding crops everything: ours must refuse too
        ref = np.zeros((0, 0))
    if ref.size == 0:  # (PyTorch's empty result at exactly zero pixels counts as that)
        with pytest.raises(ValueError, match="padding"):
            cm.conv_transpose_zero_insert(y, k, output_padding=op, **cfg)
        return
    out = cm.conv_transpose_zero_insert(y, k, output_padding=op, **cfg)
    np.testing.assert_allclose(out, ref, atol=1e-12)


@given(n=st.integers(1, 12), k=st.integers(1, 6), s=st.integers(1, 4), p=st.integers(0, 4),
       d=st.integers(1, 3), op=st.integers(0, 3))
def test_size_formulas_match_pytorch_shapes(n, k, s, p, d, op):
    x, w = torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k)
    try:
        expected = F.conv2d(x, w, stride=s, padding=p, dilation=d).shape[-1]
    except RuntimeError:
        with pytest.raises(ValueError, match="kernel"):
            cm.conv_output_size(n, k, s, p, d)
    else:
        assert cm.conv_output_size(n, k, s, p, d) == expected
        assert cm.conv_output_size((n, n), k, s, p, d) == (expected, expected)
    try:
        expected_t = F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op, dilation=d).shape[-1]
    except RuntimeError as exc:
        name = "output_padding" if "output padding" in str(exc) else "padding"
        with pytest.raises(ValueError, match=name):
            cm.conv_transpose_output_size(n, k, s, p, op, d)
    else:
        if expected_t == 0:  # PyTorch returns an empty tensor; we refuse it as a mistake
            with pytest.raises(ValueError, match="padding"):
                cm.conv_transpose_output_size(n, k, s, p, op, d)
        else:
            assert cm.conv_transpose_output_size(n, k, s, p, op, d) == expected_t


def test_empty_transposed_output_is_refused():
    assert F.conv_transpose2d(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 4, 4), padding=2).numel() == 0
    with pytest.raises(ValueError, match="padding 2 is too large .* crop the output to 0 pixels"):
        cm.conv_transpose_output_size(1, 4, padding=2)


@given(k=st.tuples(st.integers(1, 6), st.integers(1, 6)), s=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       n=st.tuples(st.integers(1, 7), st.integers(1, 7)), p=st.integers(0, 2), d=st.integers(1, 3),
       op=st.integers(0, 2))
def test_overlap_count_is_conv_transpose_of_ones(k, s, n, p, d, op):
    op = tuple(min(op, max(si, d) - 1) for si in s)
    try:
        ref = F.conv_transpose2d(torch.ones(1, 1, *n, dtype=torch.float64),
                                 torch.ones(1, 1, *k, dtype=torch.float64),
                                 stride=s, padding=p, dilation=d, output_padding=op)[0, 0].numpy()
    except RuntimeError:
        return
    counts = cm.overlap_count(k, s, input_size=n, padding=p, dilation=d, output_padding=op)
    assert counts.dtype.kind == "i"
    np.testing.assert_array_equal(counts, ref)
    one_d = cm.overlap_count(k[0], s[0], input_size=n[0], padding=p, dilation=d, output_padding=op[0])
    ref_1d = F.conv_transpose1d(torch.ones(1, 1, n[0], dtype=torch.float64),
                                torch.ones(1, 1, k[0], dtype=torch.float64),
                                stride=s[0], padding=p, dilation=d, output_padding=op[0])[0, 0].numpy()
    assert one_d.ndim == 1
    np.testing.assert_array_equal(one_d, ref_1d)


@given(k=st.integers(1, 8), s=st.integers(1, 5), d=st.integers(1, 3))
def test_interior_overlap_repeats_the_period(k, s, d):
    n = 30
    counts = cm.overlap_count(k, s, input_size=n, dilation=d)
    extent = d * (k - 1) + 1
    period = cm.overlap_period(k, s, d)
    # Away from both ends every output pixel sees a full set of taps.
    start = -(-extent // s) * s  # past the ramp-up, at phase 0 modulo s
    interior = counts[start: (n - 1) * s + 1]
    assert interior.size >= s
    np.testing.assert_array_equal(interior, np.resize(period, interior.size))
    assert period.sum() == k
    if d == 1 and k % s == 0:
        assert len(set(period.tolist())) == 1  # a multiple of the stride overlaps evenly
    if np.gcd(d, s) > 1:
        assert period.min() == 0  # dilation and stride share a factor: some pixels get no tap


# -- scale -----------------------------------------------------------------------------
def test_256_sparse_build_is_fast_and_transpose_matches():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(3, 3)).astype(np.float32)
    cm.conv2d_matrix(k, (8, 8), sparse=True)  # warm-up of lazy imports
    start = time.perf_counter()
    c = cm.conv2d_matrix(k, (256, 256), padding=1, sparse=True)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"sparse build took {elapsed:.2f} s"
    assert c.shape == (256 * 256, 256 * 256) and c.nnz == 9 * 254 * 254 + 4 * 6 * 254 + 4 * 4
    y = rng.normal(size=(256, 256)).astype(np.float32)
    ref = F.conv_transpose2d(t4(y, torch.float32), t4(k, torch.float32), padding=1)[0, 0].numpy()
    assert np.abs(c.T @ y.ravel() - ref.ravel()).max() < 1e-5
    x = rng.normal(size=(256, 256)).astype(np.float32)
    ref = F.conv2d(t4(x, torch.float32), t4(k, torch.float32), stride=2, padding=1)[0, 0].numpy()
    c2 = cm.conv2d_matrix(k, 256, stride=2, padding=1, sparse=True)
    assert np.abs(c2 @ x.ravel() - ref.ravel()).max() < 1e-5


# -- input forms -----------------------------------------------------------------------
def test_kernel_forms_and_dtypes():
    k = np.arange(6.0).reshape(2, 3)
    base = cm.conv2d_matrix(k, (3, 4))
    np.testing.assert_array_equal(cm.conv2d_matrix(torch.as_tensor(k)[None, None], (3, 4)), base)
    np.testing.assert_array_equal(cm.conv2d_matrix(k.tolist(), [3, 4]), base)
    assert cm.conv2d_matrix(k.astype(np.float32), 4).dtype == np.float32
    assert cm.conv2d_matrix(np.ones((2, 2), dtype=int), 3).dtype == np.float64


# -- bad input -------------------------------------------------------------------------
K3 = np.ones((3, 3))


@pytest.mark.parametrize("kwargs, name", [
    (dict(input_shape=(2, 5)), "kernel is larger than the padded input along the height"),
    (dict(input_shape=4, dilation=2), "kernel is larger than the padded input"),
    (dict(input_shape=4, stride=0), "stride must be an integer >= 1"),
    (dict(input_shape=4, stride=(1, -1)), "stride must be an integer >= 1"),
    (dict(input_shape=4, dilation=0), "dilation must be an integer >= 1"),
    (dict(input_shape=4, padding=-1), "padding must be an integer >= 0"),
    (dict(input_shape=4, padding=1.5), "padding must be an integer"),
    (dict(input_shape=4, stride=(1, 2, 3)), "stride must be an integer >= 1 or a pair \\(height, width\\)"),
    (dict(input_shape=0), "input_shape must be an integer >= 1"),
])
def test_bad_conv_parameters_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        cm.conv2d_matrix(K3, **kwargs)


def test_bad_kernels():
    with pytest.raises(ValueError, match="kernel must be a 2-D"):
        cm.conv2d_matrix(np.ones(3), 4)
    with pytest.raises(ValueError, match="kernel must be 2-D .* single-channel"):
        cm.conv2d_matrix(np.ones((2, 1, 3, 3)), 4)
    with pytest.raises(ValueError, match="kernel must not be empty"):
        cm.conv2d_matrix(np.ones((0, 3)), 4)
    with pytest.raises(ValueError, match="kernel_size"):
        cm.conv_output_size(4, 0)


@pytest.mark.parametrize("stride, dilation, output_padding, ok", [
    (1, 1, 1, False), (2, 1, 1, True), (2, 1, 2, False), (1, 2, 1, True), (1, 2, 2, False),
    (2, 3, 2, True), ((2, 1), 1, (1, 0), True), ((2, 1), 1, (0, 1), False), ((2, 1), (1, 2), (0, 1), True),
])
def test_output_padding_follows_pytorchs_rule(stride, dilation, output_padding, ok):
    try:
        F.conv_transpose2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3), stride=stride,
                           dilation=dilation, output_padding=output_padding)
        torch_ok = True
    except RuntimeError:
        torch_ok = False
    assert torch_ok == ok  # the rule as PyTorch enforces it: per axis, op < max(stride, dilation)
    calls = [
        lambda: cm.conv_transpose_output_size(4, 3, stride, 0, output_padding, dilation),
        lambda: cm.overlap_count(3, stride, input_size=4, dilation=dilation, output_padding=output_padding, ndim=2),
        lambda: cm.conv_transpose_zero_insert(np.ones((4, 4)), K3, stride, 0, output_padding, dilation),
    ]
    for call in calls:
        if ok:
            call()
        else:
            with pytest.raises(ValueError, match="output_padding must be smaller than stride or dilation"):
                call()


def test_transposed_padding_that_crops_everything():
    with pytest.raises(ValueError, match="padding 2 is too large"):
        cm.conv_transpose_output_size(1, 3, padding=2)
    with pytest.raises(ValueError, match="ndim must be 2"):
        cm.overlap_count((3, 3), 2, ndim=1)
    with pytest.raises(ValueError, match="ndim must be an integer in \\[1, 2\\]"):
        cm.overlap_count(3, 2, ndim=3)


# -- the checkerboard widget's helpers ---------------------------------------------------
@given(k=st.integers(1, 6), s=st.integers(1, 3), layers=st.integers(1, 3),
       weights=st.sampled_from(["all ones", "random"]))
def test_checkerboard_helpers_match_pytorch(k, s, layers, weights):
    from course_utils.widgets import conv_matrix as demo

    kernels = demo._stack_kernels(k, s, layers, weights)
    ref = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    resized = ref.clone()
    for kk in kernels:
        ref = F.conv_transpose2d(ref, torch.from_numpy(kk)[None, None], stride=s)
        resized = F.interpolate(resized, scale_factor=s, mode="nearest")
        resized = F.pad(resized, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2), mode="replicate")
        resized = F.conv2d(resized, torch.from_numpy(kk / s**2)[None, None])
    np.testing.assert_allclose(demo.transposed_stack(kernels, s, 3), ref[0, 0].numpy(), atol=1e-12)
    np.testing.assert_allclose(demo.resize_conv_stack(kernels, s, 3), resized[0, 0].numpy(), atol=1e-12)
    # Resize + conv keeps a constant constant whatever the weights.
    np.testing.assert_allclose(resized.numpy(), 1.0, atol=1e-12)
    # The interior the widget shows is free of borders: a larger input gives the same
    # values there (shifted by the extra input pixels).
    n = 3 + (k - 1) * layers  # enough that the interior is not empty
    lo, hi = demo.interior(k, s, layers, n)
    assert hi >= lo
    small = demo.transposed_stack(kernels, s, n)
    large = demo.transposed_stack(kernels, s, n + 1)
    np.testing.assert_allclose(small[lo:hi + 1, lo:hi + 1], large[lo:hi + 1, lo:hi + 1], atol=1e-12)
    if weights == "all ones" and k % s == 0:
        np.testing.assert_allclose(small[lo:hi + 1, lo:hi + 1], 1.0, atol=1e-12)
