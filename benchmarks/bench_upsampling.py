"""The upsampling ops' time as a ratio to F.interpolate, measured in the same run."""
import numpy as np
import torch
import torch.nn.functional as F

from common import best_of
from course_utils import upsampling as up


def main():
    torch.set_num_threads(torch.get_num_threads())
    rng = np.random.default_rng(0)
    print(f"{'op':<34}{'size':>9}{'f':>3}{'ours ms':>9}{'torch ms':>10}{'ratio':>7}")
    for size, f in [(64, 2), (256, 2), (256, 4), (512, 8)]:
        x = rng.random((size, size)).astype(np.float32)
        xt = torch.from_numpy(x)[None, None]
        cases = [
            ("interpolate nearest", lambda: up.interpolate(x, f, "nearest"),
             lambda: F.interpolate(xt, scale_factor=f, mode="nearest")),
            ("interpolate bilinear", lambda: up.interpolate(x, f, "bilinear"),
             lambda: F.interpolate(xt, scale_factor=f, mode="bilinear", align_corners=False)),
            ("interpolate bicubic", lambda: up.interpolate(x, f, "bicubic"),
             lambda: F.interpolate(xt, scale_factor=f, mode="bicubic", align_corners=False)),
            ("upsample_zero_insert (bilinear)", lambda: up.upsample_zero_insert(x, f),
             lambda: F.interpolate(xt, scale_factor=f, mode="bilinear", align_corners=True)),
        ]
        for name, ours, ref in cases:
            a, b = best_of(ours, repeat=5), best_of(ref, repeat=5)
            print(f"{name:<34}{size:>9}{f:>3}{a * 1e3:>9.2f}{b * 1e3:>10.2f}{a / b:>7.1f}")
