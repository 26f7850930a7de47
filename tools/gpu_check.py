#!/usr/bin/env python3
"""``make gpu-check``: does training work on this machine's device? (About a minute on a GPU.)

For each zoo model (FCN-8s, PSPNet, DeepLabV3+, Gated-SCNN; width 16, 64-pixel SynthCity
scenes, a few steps) it trains with the precision the policy chooses
(:func:`course_utils.precision.choose_precision`), stops half-way, resumes from the saved
state, evaluates, and checks that the checkpoint rebuilds the same model. Then, when
there are two GPUs, the command-line trainer under ``torchrun`` with two processes
(NCCL), and a ``torch.compile``-d FCN-8s when compiling works here. It prints one table:
what ran, on which device, in which precision, images per second, peak memory.

On a machine without CUDA it runs what it can on the CPU (or MPS) and marks the
CUDA-only rows "skipped (no CUDA)". Compiling on the CPU builds C++ kernels for minutes,
so there it runs only with ``--compile-cpu``.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from course_utils.datasets import CLASSES, SynthCity  # noqa: E402
from course_utils.device import select_device  # noqa: E402
from course_utils.models import build_model  # noqa: E402
from course_utils.precision import choose_precision  # noqa: E402
from course_utils.training import (StopAt, evaluate, fit, load_model, make_loader, predict,  # noqa: E402
                                   use_channels_last)

MODELS = ("fcn8s", "pspnet", "deeplabv3plus", "gscnn")
SIZE, N_TRAIN, N_VAL, BATCH, WIDTH = 64, 24, 8, 4, 16
COLUMNS = ("check", "device", "precision", "images/s", "peak memory", "result")


def peak_memory(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    # ru_maxrss is in KiB on Linux: the whole process's peak, not this row's alone.
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB (process RSS)"


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def train_resume_evaluate(name, device, workdir, compile=False) -> dict:
    """A few steps, a stop half-way, a resume to the end, an evaluation, a reload."""
    precision = choose_precision(device)
    train_set = SynthCity(N_TRAIN, SIZE, seed=0, augment=True)
    val_set = SynthCity(N_VAL, SIZE, seed=1)
    torch.manual_seed(0)
    model = build_model(name, len(CLASSES), width=WIDTH)
    loss = None
    if name == "gscnn":
        from course_utils.losses import GSCNNLoss

        loss = GSCNNLoss()
    steps = N_TRAIN // BATCH
    checkpoint = Path(workdir) / f"{name}{'-compiled' if compile else ''}.pt"
    options = dict(epochs=1, lr=5e-3, device=device, loss=loss, checkpoint=checkpoint, keep="last",
                   progress=False, compile=compile)
    reset_peak(device)
    first = fit(model, make_loader(train_set, BATCH, shuffle=True, device=device), None,
                callbacks=[StopAt(steps // 2)], **options)
    rest = fit(model, make_loader(train_set, BATCH, shuffle=True, device=device),
               make_loader(val_set, BATCH, device=device), resume=True, **options)
    if (first.steps, rest.steps) != (steps // 2, steps):
        raise RuntimeError(f"resume went from step {first.steps} to {rest.steps}, expected {steps // 2} -> {steps}")
    cm = evaluate(model, make_loader(val_set, BATCH, device=device), len(CLASSES), device)
    reloaded = load_model(checkpoint, map_location=device).to(device)
    images = val_set.images[:2].float() / 255
    if use_channels_last(None, device):
        reloaded = reloaded.to(memory_format=torch.channels_last)
    same = (predict(reloaded, images, device=device) == predict(model, images, device=device)).mean()
    if same < 0.999:
        raise RuntimeError(f"the reloaded checkpoint predicts {100 * (1 - same):.2f} % of pixels differently")
    # Images per second of the resumed half (the first half pays the warm-up).
    rate = rest.images_per_s
    return {"precision": precision.name, "images/s": f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}",
            "peak memory": peak_memory(device),
            "result": f"ok: {steps} steps, stop/resume, val mIoU {cm.miou():.2f} (untrained), reload equal"}


def two_gpu_ddp(workdir) -> dict:
    out = Path(workdir) / "ddp"
    script = Path(sys.executable).with_name("torchrun")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node=2", "-m", "course_utils.train", "--model", "fcn8s",
           "--data", "synthcity", "--size", str(SIZE), "--n-train", "32", "--n-val", "8", "--epochs", "1",
           "--batch-size", "8", "--pretrained-encoder", "no", "--quiet", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    env.pop("COURSE_DEVICE", None)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "torchrun failed")
    line = [s for s in done.stdout.splitlines() if s.startswith("stopped by")]
    return {"precision": choose_precision("cuda").name, "images/s": "", "peak memory": "",
            "result": f"ok in {time.perf_counter() - t0:.0f} s: " + (line[-1][:60] if line else "finished")}


def run(label, device, job, rows) -> None:
    t0 = time.perf_counter()
    try:
        row = job()
    except Exception as err:  # noqa: BLE001 - a check that fails is a row, not the end of the check
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        row = {"precision": "", "images/s": "", "peak memory": "",
               "result": f"FAILED: {type(err).__name__}: {detail}"[:120]}
        if os.environ.get("GPU_CHECK_TRACEBACK"):
            traceback.print_exc()
    rows.append({"check": label, "device": str(device), **row})
    print(f"  {label}: {rows[-1]['result']} ({time.perf_counter() - t0:.0f} s)", flush=True)


def skipped(label, device, why, rows) -> None:
    rows.append({"check": label, "device": str(device), "precision": "", "images/s": "", "peak memory": "",
                 "result": f"skipped ({why})"})


def table(rows) -> str:
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS]
    line = lambda values: "  ".join(str(v).ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(COLUMNS), line("-" * w for w in widths)] + [line(r[c] for c in COLUMNS) for r in rows])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--compile-cpu", action="store_true", help="also try torch.compile on the CPU (slow)")
    args = p.parse_args(argv)
    device = select_device()
    cuda = device.type == "cuda"
    policy = choose_precision(device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if cuda else device.type}), torch "
          f"{torch.__version__}, precision {policy.name}: {policy.reason}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as workdir:
        for name in MODELS:
            run(f"{name}: train/resume/evaluate", device, lambda n=name: train_resume_evaluate(n, device, workdir),
                rows)
        if not cuda:
            skipped("DDP, 2 processes (NCCL)", "cuda", "no CUDA", rows)
        elif torch.cuda.device_count() < 2:
            skipped("DDP, 2 processes (NCCL)", "cuda", f"{torch.cuda.device_count()} GPU", rows)
        else:
            run("DDP, 2 processes (NCCL)", "cuda:0,1", lambda: two_gpu_ddp(workdir), rows)
        if cuda or args.compile_cpu:
            run("fcn8s: torch.compile", device,
                lambda: train_resume_evaluate("fcn8s", device, workdir, compile=True), rows)
        else:
            skipped("fcn8s: torch.compile", "cuda", "no CUDA; --compile-cpu tries the CPU", rows)
    print()
    print(table(rows))
    return 1 if any(r["result"].startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
