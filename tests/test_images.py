import numpy as np
import pytest

from course_utils.images import block_mean, load_sample_image, psnr, to_gray


def test_sample_image_ships_with_matplotlib():
    img = load_sample_image("grace_hopper")
    assert img.shape == (600, 512, 3) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    gray = load_sample_image("grace_hopper", gray=True)
    np.testing.assert_allclose(gray, 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2], atol=1e-6)
    np.testing.assert_allclose(to_gray(img), gray)


def test_block_mean_by_hand():
    x = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(block_mean(x, 2), [[2.5, 4.5], [10.5, 12.5]])
    assert block_mean(np.ones((5, 7, 3)), 2).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="factor must be at most"):
        block_mean(x, 5)


def test_psnr_closed_form():
    ref = np.zeros((8, 8))
    assert psnr(ref, ref) == float("inf")
    # MSE 0.01 with peak 1 -> 10 log10(100) = 20 dB exactly.
    assert psnr(ref, np.full((8, 8), 0.1)) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="estimate must have the reference's shape"):
        psnr(ref, np.zeros((4, 4)))
