"""FCN-8s training throughput, and its FLOP/s as a fraction of this machine's matmul FLOP/s.

Both rates are measured in the same run, so the fraction says how well the small
convolutions of a course-sized network use the CPU, whatever the CPU. A diagnostic, not a
target: what counts is the accuracy reached in a time budget
(bench_time_to_accuracy.py) and the step times of bench_models.py.
"""
import time

import torch
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from common import best_of
from course_utils.models import build_model
from course_utils.training import fit, make_loader

SIZE, BATCH, NUM_CLASSES = 128, 8, 9


def matmul_flops(n: int = 2048) -> float:
    """Dense float32 matmul FLOP/s (2 n^3 per product), the best this machine does."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = best_of(lambda: torch.mm(a, b), repeat=5)
    return 2 * n**3 / seconds


def step_flops(model, images, labels) -> int:
    """FLOPs of one forward + backward pass (convolutions and matmuls, as PyTorch counts)."""
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(model(images)["out"], labels).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def measure(threads: int, model, images, labels, flops: int) -> dict:
    torch.set_num_threads(threads)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():   # the compute fit() cannot avoid: forward, backward, AdamW
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images)["out"], labels).backward()
        opt.step()

    step_s = best_of(step, repeat=7)
    peak = matmul_flops()
    return {"threads": threads, "step_s": step_s, "achieved": flops / step_s, "peak": peak}


def main():
    torch.manual_seed(0)
    all_threads = torch.get_num_threads()
    model = build_model("fcn8s", NUM_CLASSES)
    images = torch.rand(BATCH, 3, SIZE, SIZE)
    labels = torch.randint(0, NUM_CLASSES, (BATCH, SIZE, SIZE))
    flops = step_flops(model, images, labels)
    print(f"FCN-8s (width 16), {SIZE} px, batch {BATCH}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"{flops / BATCH / 1e9:.3f} GFLOP per image (forward + backward)")
    # One thread and all threads: on a busy machine a descheduled second OpenMP thread
    # stalls every small convolution, so the two can differ by far more than 2x.
    results = [measure(t, model, images, labels, flops) for t in sorted({1, all_threads})]
    print(f"{'threads':>8}{'step ms':>9}{'images/s':>10}{'GFLOP/s':>9}{'matmul GFLOP/s':>16}{'fraction':>10}")
    for r in results:
        print(f"{r['threads']:>8}{r['step_s'] * 1e3:>9.1f}{BATCH / r['step_s']:>10.1f}{r['achieved'] / 1e9:>9.2f}"
              f"{r['peak'] / 1e9:>16.2f}{r['achieved'] / r['peak']:>10.2f}")
    best = min(results, key=lambda r: r["step_s"])

    # Wider networks have more work per memory access: the fraction grows with width.
    torch.set_num_threads(best["threads"])
    for width in (32, 64):
        wide = build_model("fcn8s", NUM_CLASSES, width=width)
        r = measure(best["threads"], wide, images, labels, step_flops(wide, images, labels))
        print(f"  width {width:>3} ({sum(p.numel() for p in wide.parameters()) / 1e6:.1f} M parameters): "
              f"{BATCH / r['step_s']:6.1f} images/s, {r['achieved'] / 1e9:6.2f} GFLOP/s, "
              f"fraction {r['achieved'] / r['peak']:.2f}")

    # The whole loop (data loading, checks, schedule, bookkeeping), at the faster setting.
    data = TensorDataset(torch.rand(12 * BATCH, 3, SIZE, SIZE),
                         torch.randint(0, NUM_CLASSES, (12 * BATCH, SIZE, SIZE)))
    loader = make_loader(data, BATCH, shuffle=True, device="cpu")
    start = time.perf_counter()
    history = fit(model, loader, epochs=2, device="cpu", progress=False)
    fit_s = time.perf_counter() - start
    torch.set_num_threads(all_threads)
    fraction = best["achieved"] / best["peak"]
    print(f"fit() with {best['threads']} thread(s): {history.images_per_s:.1f} images/s "
          f"({history.steps} steps in {fit_s:.1f} s)")
    print(f"training FLOP/s as a fraction of matmul FLOP/s: {fraction:.2f} (diagnostic)")


if __name__ == "__main__":
    main()
