"""SynthCity generation rate (target >= 200 scenes/s at 128 px) and its class frequencies.

When ``course_utils.models`` provides FCN-8s, the generation rate is also compared with
the rate at which FCN-8s training steps (batch 8, AdamW) consume scenes (target: data
>= 4x faster), both measured in this run. Wall-clock rates on a shared machine are noisy; the CPU-time
rate (this process's CPU seconds) shows what the generator costs by itself.
"""
import time

import numpy as np

from common import verdict
from course_utils.datasets import CLASSES, class_frequencies, generate

TARGET_128 = 200.0
TARGET_RATIO = 4.0


def generation_rate(size: int, n: int) -> tuple[float, float]:
    """(wall, cpu) scenes per second for ``generate(n, size)``, best of three rounds."""
    generate(2, size, seed=0)                       # warm-up: lazy caches, imports
    walls, cpus = [], []
    for r in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        generate(n, size, seed=r + 1)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return n / min(walls), n / min(cpus)


def training_rate(size: int = 128, batch: int = 8, steps: int = 4):
    """Scenes/s consumed by FCN-8s training steps (forward, backward, AdamW), or None."""
    try:
        import torch
        import torch.nn.functional as F
        from course_utils.models import build_model
    except ImportError as err:
        print(f"FCN-8s training rate: skipped ({err})")
        return None
    model = build_model("fcn8s", num_classes=len(CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, labels = generate(batch, size, seed=0)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x)["out"], y, ignore_index=255).backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def serving_rate(size: int = 128, n: int = 256, batch: int = 8) -> float:
    """Scenes/s that ``make_loader(SynthCity(..., augment=True))`` delivers from memory."""
    from course_utils.datasets import SynthCity
    from course_utils.training import make_loader

    loader = make_loader(SynthCity(n, size, seed=0, augment=True), batch, shuffle=True, seed=0)
    for _ in loader:              # warm-up pass
        pass
    start = time.perf_counter()
    for _ in loader:
        pass
    return n / (time.perf_counter() - start)


def main():
    print(f"{'size':>6}{'scenes/s (wall)':>17}{'(cpu)':>8}")
    rates = {}
    for size, n in [(64, 300), (128, 200), (256, 60)]:
        wall, cpu = generation_rate(size, n)
        rates[size] = wall
        print(f"{size:>6}{wall:>17.0f}{cpu:>8.0f}")
    print(f"128 px: {rates[128]:.0f} scenes/s, target >= {TARGET_128:.0f}: {verdict(rates[128] >= TARGET_128)}")

    consumed = training_rate()
    if consumed is not None:
        ratio = rates[128] / consumed
        print(f"FCN-8s training at 128 px consumes {consumed:.0f} scenes/s; generation / consumption = "
              f"{ratio:.1f}, target >= {TARGET_RATIO:.0f}: {verdict(ratio >= TARGET_RATIO)}")
        # SynthCity renders its scenes once and every epoch re-reads them, so what a
        # training run waits for is one pass of generation, not one per epoch.
        n = 2000
        print(f"  {n} scenes: generated once in {n / rates[128]:.1f} s; one training epoch over them "
              f"takes {n / consumed:.1f} s")
        served = serving_rate()
        print(f"  what each epoch waits for: SynthCity serving augmented batches (flip, scale, crop) "
              f"at {served:.0f} scenes/s = {served / consumed:.1f} x consumption")

    _, labels = generate(500, 128, seed=0)
    freq = class_frequencies(labels)
    present = [(labels == c).any(axis=(1, 2)).mean() for c in range(len(CLASSES))]
    print(f"\nclass frequencies over 500 scenes at 128 px\n{'class':<14}{'pixels %':>9}{'in scenes %':>13}")
    for name, f, p in zip(CLASSES, freq, present):
        print(f"{name:<14}{100 * f:>9.2f}{100 * p:>13.0f}")
    rarest = CLASSES[int(np.argmin(freq))]
    print(f"rarest class: {rarest}")
