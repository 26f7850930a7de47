"""Sample photographs that ship with matplotlib (no download), and image arithmetic."""
from __future__ import annotations

import numpy as np

from ._checks import as_array, check_choice, check_int

SAMPLES = {"grace_hopper": "grace_hopper.jpg"}


def load_sample_image(name: str = "grace_hopper", gray: bool = False) -> np.ndarray:
    """A photograph from matplotlib's sample data as float32 in [0, 1], ``(H, W, 3)`` or ``(H, W)``."""
    import matplotlib.cbook
    from PIL import Image

    check_choice("name", name, tuple(SAMPLES))
    with matplotlib.cbook.get_sample_data(SAMPLES[name]) as f:
        img = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0
    return to_gray(img) if gray else img


def to_gray(img) -> np.ndarray:
    """Luma of an RGB image (ITU-R BT.601 weights)."""
    img = as_array("img", img, ndims=(3,))
    return (img[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=img.dtype)).astype(img.dtype)


def block_mean(img, factor: int) -> np.ndarray:
    """Downsample by averaging ``factor x factor`` blocks (ragged borders are cropped)."""
    img = as_array("img", img, ndims=(2, 3))
    factor = check_int("factor", factor, 1)
    h, w = img.shape[0] // factor, img.shape[1] // factor
    if h == 0 or w == 0:
        raise ValueError(f"factor must be at most the image size {img.shape[:2]}, got {factor}")
    blocks = img[: h * factor, : w * factor].reshape(h, factor, w, factor, *img.shape[2:])
    return blocks.mean(axis=(1, 3))


def psnr(reference, estimate, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(peak^2 / MSE)`` (inf when identical)."""
    reference = as_array("reference", reference, ndims=(2, 3))
    estimate = as_array("estimate", estimate, ndims=(2, 3))
    if reference.shape != estimate.shape:
        raise ValueError(f"estimate must have the reference's shape {reference.shape}, got {estimate.shape}")
    mse = float(np.mean((reference.astype(np.float64) - estimate) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak ** 2 / mse)
