"""course_utils.pooling against the lecture's example, PyTorch and hand-worked cases."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from course_utils import pooling as pl
from course_utils.upsampling import zero_insert

# Typed from the lecture's slides ("Max Pooling", "Max Unpooling"), independently of the
# copies in course_utils.pooling that the notebook and the demo use.
LECTURE_X = np.array([[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]], dtype=float)
LECTURE_DECODED = np.array([[1, 2], [3, 4]], dtype=float)
LECTURE_UNPOOLED = np.array([[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]], dtype=float)


def test_the_librarys_lecture_constants_are_the_slides():
    np.testing.assert_array_equal(pl.LECTURE_X, LECTURE_X)
    np.testing.assert_array_equal(pl.LECTURE_DECODED, LECTURE_DECODED)
    np.testing.assert_array_equal(pl.LECTURE_UNPOOLED, LECTURE_UNPOOLED)


def t4(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))[None, None]


def torch_pool(x, k, s):
    p, i = F.max_pool2d(t4(x), k, s, return_indices=True)
    return p[0, 0].numpy(), i[0, 0].numpy()


def torch_unpool(v, idx, k, s, shape):
    out = F.max_unpool2d(t4(v), torch.as_tensor(idx)[None, None], k, s, output_size=tuple(shape))
    return out[0, 0].numpy()


# -- the lecture's worked example --------------------------------------------------------
def test_lecture_pooling_and_switches():
    pooled, idx = pl.max_pool2d_with_indices(LECTURE_X, 2)
    np.testing.assert_array_equal(pooled, [[5, 6], [7, 8]])
    # 5 at (1,1), 6 at (0,2), 7 at (3,0), 8 at (3,3), as flat indices r*4+c.
    np.testing.assert_array_equal(idx, [[5, 2], [12, 15]])
    tp, ti = torch_pool(LECTURE_X, 2, 2)
    np.testing.assert_array_equal(pooled, tp)
    np.testing.assert_array_equal(idx, ti)


def test_lecture_unpooling_exact():
    _, idx = pl.max_pool2d_with_indices(LECTURE_X, 2)
    out = pl.max_unpool2d(LECTURE_DECODED, idx, (4, 4))
    np.testing.assert_array_equal(out, LECTURE_UNPOOLED)
    np.testing.assert_array_equal(torch_unpool(LECTURE_DECODED, idx, 2, 2, (4, 4)), LECTURE_UNPOOLED)


# -- against PyTorch on random inputs ----------------------------------------------------------
@st.composite
def pooling_cases(draw, values):
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    kh, kw = draw(st.integers(1, min(h, 5))), draw(st.integers(1, min(w, 5)))
    stride = draw(st.one_of(st.none(), st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    x = draw(values(h, w))
    return x, (kh, kw), stride


def normal(h, w):
    return st.integers(0, 2**16).map(lambda seed: np.random.default_rng(seed).normal(size=(h, w)))


def tiny_integers(h, w):
    # Values from {0, 1, 2}: almost every window holds a tie.
    return st.integers(0, 2**16).map(lambda seed: np.random.default_rng(seed).integers(0, 3, (h, w)).astype(float))


def _torch_stride(kernel, stride):
    return kernel if stride is None else stride


@given(case=pooling_cases(normal))
def test_pooling_matches_torch(case):
    x, k, s = case
    pooled, idx = pl.max_pool2d_with_indices(x, k, s)
    tp, ti = torch_pool(x, k, _torch_stride(k, s))
    assert pooled.shape == pl.pooled_shape(x.shape, k, s) == tp.shape
    np.testing.assert_array_equal(pooled, tp)
    np.testing.assert_array_equal(idx, ti)
    assert idx.dtype == np.int64


@given(case=pooling_cases(tiny_integers))
def test_ties_match_torch(case):
    x, k, s = case
    pooled, idx = pl.max_pool2d_with_indices(x, k, s)
    tp, ti = torch_pool(x, k, _torch_stride(k, s))
    np.testing.assert_array_equal(pooled, tp)
    np.testing.assert_array_equal(idx, ti)


@given(case=pooling_cases(tiny_integers), seed=st.integers(0, 2**16))
def test_unpooling_matches_torch(case, seed):
    x, k, s = case
    pooled, idx = pl.max_pool2d_with_indices(x, k, s)
    ts = _torch_stride(k, s)
    # The pooled values themselves: cells that share a switch carry the same value, so
    # PyTorch's order of writes cannot matter.
    np.testing.assert_array_equal(pl.max_unpool2d(pooled, idx, x.shape), torch_unpool(pooled, idx, k, ts, x.shape))
    # Arbitrary values ("the rest of the network"): compare where switches are unique.
    v = np.random.default_rng(seed).normal(size=pooled.shape)
    ours, ref = pl.max_unpool2d(v, idx, x.shape), torch_unpool(v, idx, k, ts, x.shape)
    positions, counts = np.unique(idx, return_counts=True)
    unique = np.isin(np.arange(x.size), positions[counts == 1]).reshape(x.shape)
    np.testing.assert_array_equal(ours[unique], ref[unique])
    np.testing.assert_array_equal(ours == 0, ref == 0)


@given(case=pooling_cases(normal))
def test_unpool_then_pool_gives_the_pooled_values_back(case):
    x, k, s = case
    x = np.abs(x)  # zeros written by unpooling never beat a window's non-negative maximum
    pooled, idx = pl.max_pool2d_with_indices(x, k, s)
    unpooled = pl.max_unpool2d(pooled, idx, x.shape)
    assert np.count_nonzero(unpooled) == np.unique(idx).size
    np.testing.assert_array_equal(unpooled.flat[idx.ravel()], pooled.ravel())
    np.testing.assert_array_equal(pl.max_pool2d_with_indices(unpooled, k, s)[0], pooled)


# -- the tie rule, uneven sizes, overlap, by hand ----------------------------------------------
def test_tie_rule_first_maximum_in_row_major_order():
    _, idx = pl.max_pool2d_with_indices([[3, 7], [7, 2]], 2)
    assert idx.item() == 1                               # the 7 in the top row, not the one below
    _, idx = pl.max_pool2d_with_indices(np.ones((4, 4)), 2)
    np.testing.assert_array_equal(idx, [[0, 2], [8, 10]])  # every window's top-left corner
    _, idx = pl.max_pool2d_with_indices([[0, 5, 5], [5, 0, 0]], (2, 3))
    assert idx.item() == 1


def test_uneven_sizes_floor_and_ignore_the_border():
    x = np.random.default_rng(1).normal(size=(5, 7))
    pooled, idx = pl.max_pool2d_with_indices(x, 2)
    assert pooled.shape == (2, 3)
    x2 = x.copy()
    x2[4, :] = x2[:, 6] = 100.0  # outside every whole window
    np.testing.assert_array_equal(pl.max_pool2d_with_indices(x2, 2)[0], pooled)
    assert pl.max_unpool2d(pooled, idx, x.shape).shape == (5, 7)
    np.testing.assert_array_equal(pl.max_unpool2d(pooled, idx, x.shape), torch_unpool(pooled, idx, 2, 2, (5, 7)))


def test_overlapping_windows_share_a_switch_and_the_last_write_wins():
    x = np.zeros((5, 5))
    x[2, 2] = 9.0
    pooled, idx = pl.max_pool2d_with_indices(x, 3, stride=1)
    np.testing.assert_array_equal(idx, np.full((3, 3), 12))
    np.testing.assert_array_equal(pooled, 9.0)
    out = pl.max_unpool2d(np.arange(9.0).reshape(3, 3), idx, (5, 5))
    assert out[2, 2] == 8.0 and np.count_nonzero(out) == 1


def test_stride_larger_than_kernel_skips_pixels():
    x = np.arange(36.0).reshape(6, 6)
    pooled, idx = pl.max_pool2d_with_indices(x, 2, stride=3)
    np.testing.assert_array_equal(pooled, [[7, 10], [25, 28]])
    np.testing.assert_array_equal(idx, [[7, 10], [25, 28]])


# -- bed of nails and nearest --------------------------------------------------------------------
@given(h=st.integers(1, 8), w=st.integers(1, 8), f=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_bed_of_nails_and_nearest_as_transposed_convolutions(h, w, f, seed):
    x = np.random.default_rng(seed).normal(size=(h, w))
    corner = np.zeros((f, f))
    corner[0, 0] = 1.0
    ref = F.conv_transpose2d(t4(x), t4(corner), stride=f)[0, 0].numpy()
    np.testing.assert_array_equal(pl.unpool_bed_of_nails(x, f), ref)
    np.testing.assert_array_equal(pl.unpool_bed_of_nails(x, f), zero_insert(x, f))
    ref = F.conv_transpose2d(t4(x), t4(np.ones((f, f))), stride=f)[0, 0].numpy()
    np.testing.assert_array_equal(pl.unpool_nearest(x, f), ref)
    np.testing.assert_array_equal(pl.unpool_nearest(x, f), F.interpolate(t4(x), scale_factor=f, mode="nearest")[0, 0].numpy())


def test_bed_of_nails_is_max_unpooling_with_corner_switches():
    x = np.arange(1.0, 7.0).reshape(2, 3)
    rows, cols = np.meshgrid(np.arange(2) * 2, np.arange(3) * 2, indexing="ij")
    np.testing.assert_array_equal(pl.unpool_bed_of_nails(x, 2), pl.max_unpool2d(x, rows * 6 + cols, (4, 6)))


def test_tensors_in_numpy_out():
    x = torch.tensor(LECTURE_X, dtype=torch.float32)
    pooled, idx = pl.max_pool2d_with_indices(x)
    assert isinstance(pooled, np.ndarray) and pooled.dtype == np.float32
    out = pl.max_unpool2d(torch.tensor(LECTURE_DECODED), torch.as_tensor(idx), torch.Size([4, 4]))
    np.testing.assert_array_equal(out, LECTURE_UNPOOLED)
    ints = pl.max_pool2d_with_indices(torch.tensor([[1, 2], [3, 4]]))[0]
    assert ints.item() == 4 and ints.dtype == np.float64


def test_show_switches_outlines_windows_and_switches():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    _, idx = pl.max_pool2d_with_indices(LECTURE_X, 2)
    pl.show_switches(LECTURE_X, idx, ax=ax, kernel_size=2)
    assert len(ax.patches) == 4 + 4
    ax.clear()
    _, idx = pl.max_pool2d_with_indices(LECTURE_X, 3, stride=1)  # overlapping: no window outlines
    pl.show_switches(LECTURE_X, idx, ax=ax, kernel_size=3, stride=1)
    assert len(ax.patches) == np.unique(idx).size
    plt.close(fig)


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, -1, 1.5, 2.0, True, None, "2", (2,), (2, 0), (2, 2, 2)])
def test_bad_kernel_size(k):
    with pytest.raises(ValueError, match="kernel_size must be an integer >= 1"):
        pl.max_pool2d_with_indices(LECTURE_X, k)


@pytest.mark.parametrize("s", [0, -2, 1.0, (1, 0)])
def test_bad_stride(s):
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        pl.max_pool2d_with_indices(LECTURE_X, 2, s)


def test_kernel_larger_than_input():
    with pytest.raises(ValueError, match=r"kernel_size must be at most the input size \(4, 4\), got \(5, 5\)"):
        pl.max_pool2d_with_indices(LECTURE_X, 5)
    with pytest.raises(ValueError, match="kernel_size must be at most"):
        pl.max_pool2d_with_indices(np.ones((3, 8)), (4, 2))


@pytest.mark.parametrize("x", [np.arange(4.0), np.zeros((2, 3, 4)), np.zeros((1, 1, 4, 4)), [["a", "b"]],
                               np.zeros((0, 3)), [[1.0, np.nan], [0.0, 1.0]]])
def test_bad_x(x):
    with pytest.raises(ValueError, match="x must"):
        pl.max_pool2d_with_indices(x, 1)


def test_bad_unpool_arguments():
    _, idx = pl.max_pool2d_with_indices(LECTURE_X, 2)
    with pytest.raises(ValueError, match=r"indices must have the shape of x \(2, 2\), got \(1, 4\)"):
        pl.max_unpool2d(LECTURE_DECODED, idx.reshape(1, 4), (4, 4))
    with pytest.raises(ValueError, match="indices must hold integers"):
        pl.max_unpool2d(LECTURE_DECODED, idx.astype(float), (4, 4))
    with pytest.raises(ValueError, match="indices must be >= 0"):
        pl.max_unpool2d(LECTURE_DECODED, -idx, (4, 4))
    with pytest.raises(ValueError, match=r"output_shape \(3, 4\) is too small for indices: the largest index 15"):
        pl.max_unpool2d(LECTURE_DECODED, idx, (3, 4))
    with pytest.raises(ValueError, match="output_shape must be at least the shape of x"):
        pl.max_unpool2d(LECTURE_DECODED, np.zeros((2, 2), dtype=int), (1, 8))
    with pytest.raises(ValueError, match="output_shape must be an integer >= 1"):
        pl.max_unpool2d(LECTURE_DECODED, idx, (4, 0))
    with pytest.raises(ValueError, match="output_shape must be an integer >= 1 or a pair"):
        pl.max_unpool2d(LECTURE_DECODED, idx, (16,))
    with pytest.raises(ValueError, match="x must be a 2-D"):
        pl.max_unpool2d(np.ones(4), idx.ravel(), (4, 4))


@pytest.mark.parametrize("fn", [pl.unpool_bed_of_nails, pl.unpool_nearest])
def test_bad_factor(fn):
    for factor in (0, -1, 1.5):
        with pytest.raises(ValueError, match="factor must be an integer >= 1"):
            fn(LECTURE_DECODED, factor)
    with pytest.raises(ValueError, match="x must be a 2-D"):
        fn(np.ones(3), 2)


# -- the instructor demo ---------------------------------------------------------------------------
def test_unpooling_demo_shows_the_lecture_and_refuses_a_window_that_does_not_fit():
    from course_utils.widgets import unpooling_demo

    demo = unpooling_demo()
    assert demo.error is None and demo.values()["input"] == "the lecture's 4x4"
    np.testing.assert_array_equal(demo.state["indices"], [[5, 2], [12, 15]])
    # It opens on the slides: the decoder's 2x2 [[1, 2], [3, 4]] unpooled at the switches.
    np.testing.assert_array_equal(demo.state["decoded"], LECTURE_DECODED)
    np.testing.assert_array_equal(demo.state["unpooled"], LECTURE_UNPOOLED)
    assert demo.message.value.startswith("The lecture&#x27;s example")
    demo.controls["stride"].value = 1                 # elsewhere the pooled maxima are unpooled
    np.testing.assert_array_equal(demo.state["decoded"], demo.state["pooled"])
    demo.controls["stride"].value = 2
    demo.controls["pool_size"].value = 5
    assert demo.error is None and "pool size 5 is larger than the 4x4 input" in demo.message.value
    demo.controls["unpooling"].value = "nearest"
    demo.controls["pool_size"].value = 3
    demo.controls["stride"].value = 1
    assert demo.state["unpooled"].shape == (2, 2) and "overlap" in demo.message.value


def test_unpooling_demo_digits_are_legible_at_every_setting():
    from course_utils.widgets import unpooling_demo
    from course_utils.widgets.base import sweep
    from course_utils.widgets.pooling import MIN_FONT

    demo = unpooling_demo()
    renderer = demo.figure.canvas.get_renderer()
    for values, _ in sweep(demo):
        if demo.error is not None or demo.veil.get_visible():
            continue
        for panel in demo.panels:
            shown = [t for t in panel.texts if t.get_visible()]
            if not shown:
                continue
            h, w = panel.image.get_array().shape
            box = panel.ax.get_window_extent(renderer)
            cell = min(box.width / w, box.height / h)
            for text in shown:
                extent = text.get_window_extent(renderer)
                assert text.get_fontsize() >= MIN_FONT, values
                assert extent.width <= cell and extent.height <= cell, (values, text.get_text())
