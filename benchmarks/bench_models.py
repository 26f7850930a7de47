"""Training step time of FCN-8s, DeepLabV3+ and Gated-SCNN: before the speed work, fp32, channels_last,
bf16, torch.compile.

One step = forward, loss (cross-entropy; Gated-SCNN its own GSCNNLoss, as it trains;
"gscnn c2" is Gated-SCNN with its shape stream at stride 4, shape_level="c2"),
backward and AdamW, at batch 8, 128 px, 2 threads. "before" is the code before the speed work
(PyTorch's per-tensor AdamW loop, FCN upsampling through ConvTranspose2d); the other
columns use fused AdamW and the polyphase upsampling. Each column is the fastest of several
rounds in which every configuration takes one step in turn; speed-ups are over the same
model's "before" step in the same run. How OpenMP threads wait (the other half of the
change) is measured apart, in bench_threads.py. bf16 autocast runs only where the CPU
has native bf16 (course_utils.precision). The compile time (the first step, cold: no
inductor cache) is reported apart. Targets: Gated-SCNN's fp32 step <= 1.3x DeepLabV3+'s;
the compiled models train.
"""
import time

import torch
import torch.nn.functional as F

from common import as_before, verdict
from course_utils.losses import GSCNNLoss
from course_utils.models import build_model
from course_utils.precision import Precision, cpu_has_native_bf16

# Row name -> (model, options). "gscnn c2" starts its shape stream from the stride-4 features.
MODELS = {"fcn8s": ("fcn8s", {}), "deeplabv3plus": ("deeplabv3plus", {}), "gscnn": ("gscnn", {}),
          "gscnn c2": ("gscnn", {"shape_level": "c2"})}
SIZE, BATCH, NUM_CLASSES, THREADS = 128, 8, 9, 2
ROUNDS, WARMUP = 7, 2
GSCNN_TARGET = 1.3


def make_step(name, model, images, labels, precision=None, fused=True):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    loss_fn = GSCNNLoss() if MODELS[name][0] == "gscnn" else (lambda out, y: F.cross_entropy(out, y))
    precision = precision or Precision("cpu")

    def step():
        opt.zero_grad(set_to_none=True)
        with precision.autocast():
            out = model(images)
        out = {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()
        loss = loss_fn(out, labels)
        loss.backward()
        opt.step()
        return loss
    return step


def interleaved_best(steps: dict, rounds: int = ROUNDS) -> dict:
    """Fastest time of each step over ``rounds`` rounds that run every step once in turn.

    On a shared machine a step is slowed by whatever else runs; taking turns exposes every
    configuration to the same load, and the fastest of several rounds is the least disturbed.
    """
    times = {k: [] for k in steps}
    for _ in range(rounds):
        for k, step in steps.items():
            start = time.perf_counter()
            step()
            times[k].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def fresh(name, channels_last=False, before=False):
    torch.manual_seed(0)
    model = build_model(MODELS[name][0], NUM_CLASSES, **MODELS[name][1]).train()
    if before:
        as_before(model)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def main():
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    images = torch.rand(BATCH, 3, SIZE, SIZE)
    labels = torch.randint(0, NUM_CLASSES, (BATCH, SIZE, SIZE))
    images_cl = images.contiguous(memory_format=torch.channels_last)
    native = cpu_has_native_bf16()
    # A cold compile, as a student's first run (no inductor cache from earlier runs).
    torch._inductor.config.fx_graph_cache = False
    steps, rows = {}, {name: {} for name in MODELS}
    for name in MODELS:
        steps[name, "before"] = make_step(name, fresh(name, before=True), images, labels, fused=False)
        steps[name, "fp32"] = make_step(name, fresh(name), images, labels)
        steps[name, "channels_last"] = make_step(name, fresh(name, True), images_cl, labels)
        if native:
            steps[name, "bf16"] = make_step(name, fresh(name), images, labels, Precision("cpu", torch.bfloat16))
        step = make_step(name, torch.compile(fresh(name)), images, labels)
        start = time.perf_counter()
        try:
            step()
            rows[name]["compile_s"] = time.perf_counter() - start
            steps[name, "compiled"] = step
        except Exception as exc:  # report, do not stop the other benchmarks
            rows[name]["compile_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        print(f"  {name}: compiled", flush=True)
    for step in steps.values():
        for _ in range(WARMUP):
            step()
    for (name, key), seconds in interleaved_best(steps).items():
        rows[name][key] = seconds
    torch.set_num_threads(threads)

    print(f"batch {BATCH}, {SIZE} px, {THREADS} threads, forward + loss + backward + AdamW; "
          f"fastest of {ROUNDS} interleaved steps (ms) and speed-up over before (before time / time)")
    print(f"{'model':<15}{'before':>8}{'fp32':>16}{'channels_last':>18}{'bf16 autocast':>26}{'torch.compile':>22}"
          f"{'compile time':>14}")
    for name, r in rows.items():
        ref = r["before"]

        def cell(key):
            return f"{r[key] * 1e3:7.0f} ({ref / r[key]:.2f}x)"
        bf16 = cell("bf16") if "bf16" in r else "skipped: no native bf16"
        compiled = cell("compiled") if "compiled" in r else r.get("compile_error", "-")
        compile_s = f"{r['compile_s']:.0f} s" if "compile_s" in r else "-"
        print(f"{name:<15}{ref * 1e3:8.0f}{cell('fp32'):>16}{cell('channels_last'):>18}{bf16:>26}{compiled:>22}"
              f"{compile_s:>14}")
    def fastest(name):
        return min(rows[name][k] for k in ("fp32", "channels_last"))
    for name in ("gscnn", "gscnn c2"):
        ratio = fastest(name) / fastest("deeplabv3plus")
        print(f"{name} step / DeepLabV3+ step (each in its faster layout, fp32): {ratio:.2f} "
              f"(target <= {GSCNN_TARGET}: {verdict(ratio <= GSCNN_TARGET)})")
    trained = all("compiled" in r for r in rows.values())
    print(f"every compiled model trains: {trained} ({verdict(trained)})")


if __name__ == "__main__":
    main()
