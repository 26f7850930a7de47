"""course_utils.upsampling against hand-worked values, PyTorch and SciPy."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st
from scipy.signal import convolve2d

from course_utils import upsampling as up

LECTURE_X = np.arange(1, 17, dtype=float).reshape(4, 4)


def t4(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))[None, None]


# -- the lecture's worked example ------------------------------------------------------
def test_lecture_kernel_is_the_3x3_bilinear_filter():
    expected = [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]
    np.testing.assert_array_equal(up.bilinear_kernel(2), expected)


def test_lecture_zero_insertion_layout():
    z = up.zero_insert(LECTURE_X, 2)
    assert z.shape == (8, 8)
    np.testing.assert_array_equal(z[::2, ::2], LECTURE_X)
    assert z[1::2, :].sum() == 0 and z[:, 1::2].sum() == 0


def test_lecture_example_by_hand():
    y = up.upsample_zero_insert(LECTURE_X, 2)
    np.testing.assert_array_equal(y[::2, ::2], LECTURE_X)      # originals survive
    assert y[0, 1] == (1 + 2) / 2                               # between two samples
    assert y[1, 0] == (1 + 5) / 2
    assert y[1, 1] == (1 + 2 + 5 + 6) / 4                       # between four samples
    # Edge effect: past the last sample only half the kernel weight lands on data.
    assert y[0, 7] == 4 / 2 and y[7, 0] == 13 / 2 and y[7, 7] == 16 / 4


def test_edge_fixes_keep_a_constant_constant():
    ones = np.ones((5, 6))
    for f in (2, 3, 5):
        zero = up.upsample_zero_insert(ones, f, edge="zero")
        assert zero.min() < 1.0  # the artefact the fixes remove
        for edge in ("normalize", "replicate"):
            np.testing.assert_allclose(up.upsample_zero_insert(ones, f, edge=edge), 1.0, atol=1e-12)


# -- against PyTorch ---------------------------------------------------------------------
sizes = st.integers(2, 12)
factors = st.integers(1, 6)


@given(h=sizes, w=sizes, f=factors, seed=st.integers(0, 2**16))
def test_inside_the_grid_equals_interpolate_align_corners(h, w, f, seed):
    x = np.random.default_rng(seed).normal(size=(h, w))
    y = up.upsample_zero_insert(x, f)
    ref = F.interpolate(t4(x), size=((h - 1) * f + 1, (w - 1) * f + 1), mode="bilinear",
                        align_corners=True)[0, 0].numpy()
    np.testing.assert_allclose(y[: (h - 1) * f + 1, : (w - 1) * f + 1], ref, atol=1e-12)


@given(h=sizes, w=sizes, f=factors, seed=st.integers(0, 2**16))
def test_equals_strided_transposed_convolution(h, w, f, seed):
    x = np.random.default_rng(seed).normal(size=(h, w))
    k = t4(up.bilinear_kernel(f))
    ref = F.conv_transpose2d(t4(x), k, stride=f, padding=f - 1, output_padding=f - 1)[0, 0].numpy()
    np.testing.assert_allclose(up.upsample_zero_insert(x, f), ref, atol=1e-12)


@given(h=sizes, w=sizes, f=factors, kh=st.sampled_from([1, 3, 5]), kw=st.sampled_from([1, 3, 5, 7]),
       seed=st.integers(0, 2**16))
def test_any_kernel_is_a_true_convolution_of_the_zero_grid(h, w, f, kh, kw, seed):
    rng = np.random.default_rng(seed)
    x, k = rng.normal(size=(h, w)), rng.normal(size=(kh, kw))
    z = up.zero_insert(x, f)
    # conv2d is cross-correlation: flipping the kernel makes it a convolution.
    ref = F.conv2d(t4(z), t4(k[::-1, ::-1].copy()), padding=(kh // 2, kw // 2))[0, 0].numpy()
    np.testing.assert_allclose(up.upsample_zero_insert(x, f, kernel=k), ref, atol=1e-10)
    np.testing.assert_allclose(ref, convolve2d(z, k, mode="same"), atol=1e-10)


@given(h=sizes, w=sizes, f=factors, method=st.sampled_from(["nearest", "bilinear", "bicubic"]),
       seed=st.integers(0, 2**16))
def test_interpolate_matches_torch(h, w, f, method, seed):
    x = np.random.default_rng(seed).normal(size=(h, w))
    kwargs = {} if method == "nearest" else {"align_corners": False}
    ref = F.interpolate(t4(x), scale_factor=f, mode=method, **kwargs)[0, 0].numpy()
    np.testing.assert_allclose(up.interpolate(x, f, method), ref, atol=1e-12)


def test_interpolate_rgb_is_per_channel_and_accepts_tensors():
    x = np.random.default_rng(0).random((6, 7, 3))
    for method in up.METHODS:
        y = up.interpolate(torch.as_tensor(x), 3, method)
        assert y.shape == (18, 21, 3)
        for c in range(3):
            np.testing.assert_allclose(y[..., c], up.interpolate(x[..., c], 3, method), atol=1e-12)


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("f", [1, 2, 3, 8])
def test_resampling_rows_are_a_partition_of_unity(method, f):
    r = up.resampling_matrix(9, f, method).toarray()
    assert r.shape == (9 * f, 9)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-12)


def test_kernel_profiles():
    for f in (1, 2, 3, 7):
        t, w = up.interpolation_kernel_1d("bilinear", f)
        np.testing.assert_allclose(w, up.bilinear_kernel_1d(f))
        assert len(w) == 2 * f - 1
        _, box = up.interpolation_kernel_1d("nearest", f)
        np.testing.assert_array_equal(box, np.ones(f))
    k = up.kernel_function("bicubic")
    # Keys' cubic interpolates: 1 at 0, 0 at the other integers, 0 outside [-2, 2].
    np.testing.assert_allclose(k(np.array([0, 1, -1, 2, -2, 2.5])), [1, 0, 0, 0, 0, 0], atol=1e-12)
    assert k(np.array([1.5]))[0] < 0  # the negative lobe that sharpens edges


# -- bad input -----------------------------------------------------------------------
@pytest.mark.parametrize("factor", [0, -2, 2.0, 1.5, True, "2", None, 10**6])
def test_bad_factor_names_the_parameter(factor):
    with pytest.raises(ValueError, match="factor must be an integer in"):
        up.upsample_zero_insert(LECTURE_X, factor)
    with pytest.raises(ValueError, match="factor"):
        up.zero_insert(LECTURE_X, factor)
    with pytest.raises(ValueError, match="factor"):
        up.bilinear_kernel(factor)


@pytest.mark.parametrize("x", [np.arange(4.0), np.zeros((2, 3, 4)), np.zeros((1, 1, 2, 2)), [["a"]]])
def test_non_2d_input_is_refused(x):
    with pytest.raises(ValueError, match="x must"):
        up.zero_insert(x, 2)
    with pytest.raises(ValueError, match="x must"):
        up.upsample_zero_insert(x, 2)


def test_unknown_method_and_edge_and_even_kernel():
    with pytest.raises(ValueError, match="method must be one of 'nearest', 'bilinear'"):
        up.interpolate(LECTURE_X, 2, "lanczos")
    with pytest.raises(ValueError, match="edge must be one of"):
        up.upsample_zero_insert(LECTURE_X, 2, edge="wrap")
    with pytest.raises(ValueError, match="kernel must have odd height and width"):
        up.upsample_zero_insert(LECTURE_X, 2, kernel=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"x must be a 2-D \(H, W\) or 3-D"):
        up.interpolate(np.arange(3.0), 2)
