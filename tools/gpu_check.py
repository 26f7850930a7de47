#!/usr/bin/env python3
"""``make gpu-check``: does the course run, and run well, on this machine's GPU? Under ten minutes.

One script, in parts; each part has a time cap, and a part that fails records its error
while the next one runs:

==============  ==========================================================================
environment     GPU, driver, torch / CUDA / cuDNN / NCCL versions, compute capability, and
                the course's own device report (:func:`course_utils.device.device_report`)
models          FCN-8s, PSPNet, DeepLabV3+ and Gated-SCNN: a few steps, a stop half-way, a
                resume, an evaluation, a reload (with the precision the policy chooses)
fp16_scaler     fp16 with a GradScaler forced, as a GPU of compute capability 7.x gets it,
                for FCN-8s and Gated-SCNN: losses finite, steps skipped, the final scale
syncs           host-device synchronisations per training step in steady state
                (``torch.cuda.set_sync_debug_mode("warn")``, warnings counted)
upsampling      FCN's 8x upsampling, polyphase form against ``nn.ConvTranspose2d``,
                forward + backward, and whether "auto" picks the faster one here
ddp             DistributedDataParallel on one rank: NCCL, SyncBatchNorm, channels_last,
                in a fresh process with ``PYTHONWARNINGS=error``
zoo             the committed zoo (``data/zoo``) evaluated in CUDA bf16 against the mIoU
                the manifest records from the CPU
ddp_2gpu        the command-line trainer under ``torchrun`` on two GPUs, when there are two
throughput      notebook 06's GPU plan for a while in each variant (:data:`VARIANTS`): as
                shipped, loader workers, data resident on the device, compiled, a large
                batch: images/s, ms per step, GPU utilisation, peak memory
==============  ==========================================================================

Everything goes into ONE JSON file (``build/gpu_check.json``, or ``--out``), rewritten
after every part, so a run cut short still leaves what it measured; a table follows on
stdout, and the file's path is the last line. Throughput runs last and shares out the
time left. Notebook 06's plan is read from the notebook itself (the ``plan = dict(...)``
under ``if device.type == "cuda":``), so the check follows the notebook.

On a machine without CUDA (or with ``--device cpu``) the parts that can run do (models and
upsampling, a couple of minutes on two cores) and the others are recorded as
"skipped (no CUDA)". ``--quick`` shrinks every size to a smoke test (seconds).
``--parts`` runs a subset.

Where PyTorch is installed but the course is not (a lent GPU machine)::

    PYTHONPATH=. python3 tools/gpu_check.py --out /tmp/gpu_check.json
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import datetime
import inspect
import json
import math
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from course_utils.atomic import write_atomic  # noqa: E402
from course_utils.datasets import CLASSES, SynthCity  # noqa: E402
from course_utils.models import build_model  # noqa: E402
from course_utils.precision import Precision, choose_precision  # noqa: E402
from course_utils.training import (StopAt, evaluate, fit, load_model, make_loader, predict,  # noqa: E402
                                   use_channels_last)

DEFAULT_OUT = ROOT / "build" / "gpu_check.json"
NOTEBOOK_06 = ROOT / "notebooks" / "06_training_and_evaluation.ipynb"
MODELS = ("fcn8s", "pspnet", "deeplabv3plus", "gscnn")
# The whole check ends within this many seconds (the machine lends ten minutes).
BUDGET_S = 540
# Used only when notebook 06's GPU plan cannot be read (the result says so).
FALLBACK_PLAN = dict(size=256, n_train=4000, n_val=400, epochs=30, batch_size=16, lr=4e-3, width=32, amp=True)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each part's work is: the full check, or ``--quick``'s smoke test."""

    size: int = 64              # models, fp16: SynthCity scene size
    n_train: int = 24
    n_val: int = 8
    batch: int = 4
    width: int = 16
    fp16_steps: int = 30
    sync_warmup: int = 15       # past the trainer's first 10 steps, which check labels (a sync each)
    sync_steps: int = 20
    variant_s: float = 30.0     # throughput: seconds measured per variant, at most
    variant_warmup: int = 5     # steps before the clock starts (compilation, autotuning)
    scenes: int = 512           # throughput: scenes drawn (the plan's n_train, at most this)
    max_plan_size: int | None = None
    upsampling_reps: int = 20
    zoo_val: int | None = None  # None: the recipe's validation set


FULL = Sizes()
QUICK = Sizes(size=32, n_train=8, n_val=4, batch=4, width=8, fp16_steps=4, sync_warmup=11, sync_steps=3,
              variant_s=2.0, variant_warmup=2, scenes=16, max_plan_size=64, upsampling_reps=3, zoo_val=16)


@dataclasses.dataclass
class Context:
    device: torch.device
    sizes: Sizes
    workdir: Path
    plan: dict
    plan_source: str

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


# -- environment --------------------------------------------------------------------------------
def environment(ctx: Context, cap_s: float) -> dict:
    from course_utils.device import device_report, library_versions

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": _quiet(torch.backends.cudnn.version),
            "nccl": _nccl_version(), "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
            "gpu": None, "driver": None, "cuda_driver_api": None, "compute_capability": None,
            "device_report": device_report(ctx.device), "libraries": library_versions()}
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        info.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                    driver=_driver_version(), cuda_driver_api=_quiet(torch._C._cuda_getDriverVersion))
    gpu = f"{info['gpu']} (cc {info['compute_capability']}, driver {info['driver']})" if ctx.cuda else "no GPU"
    info["summary"] = (f"{gpu}; torch {info['torch']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}, "
                       f"NCCL {info['nccl']}; precision {info['device_report']['precision']}")
    return info


def _quiet(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a version that cannot be read is recorded as None
        return None


def _nccl_version():
    version = _quiet(lambda: torch.cuda.nccl.version())
    return ".".join(map(str, version)) if isinstance(version, tuple) else version


def _driver_version():
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # noqa: BLE001 - nvidia-smi next
        pass
    out = _nvidia_smi("driver_version")
    return out[0] if out else None


def _nvidia_smi(field: str) -> list[str] | None:
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else None


# -- models: train, stop, resume, evaluate, reload ----------------------------------------------
def models(ctx: Context, cap_s: float) -> dict:
    results = attempt_each({name: (lambda n=name: train_resume_evaluate(n, ctx)) for name in MODELS})
    ok = sum(r["status"] == "ok" for r in results.values())
    summary = (f"{ok}/{len(MODELS)} ok, stop/resume/evaluate/reload; precision "
               + ", ".join(sorted({r["precision"] for r in results.values() if "precision" in r})) + problems(results))
    return {"models": results, "summary": summary, "failed": any_failed(results)}


def train_resume_evaluate(name: str, ctx: Context) -> dict:
    """A few steps, a stop half-way, a resume to the end, an evaluation, a reload."""
    s, device = ctx.sizes, ctx.device
    precision = choose_precision(device)
    train_set = SynthCity(s.n_train, s.size, seed=0, augment=True)
    val_set = SynthCity(s.n_val, s.size, seed=1)
    torch.manual_seed(0)
    model = build_model(name, len(CLASSES), width=s.width)
    steps = s.n_train // s.batch
    checkpoint = ctx.workdir / f"{name}.pt"
    options = dict(epochs=1, lr=5e-3, device=device, checkpoint=checkpoint, keep="last",
                   progress=False)
    reset_peak(device)
    first = fit(model, make_loader(train_set, s.batch, shuffle=True, device=device), None,
                callbacks=[StopAt(steps // 2)], **options)
    rest = fit(model, make_loader(train_set, s.batch, shuffle=True, device=device),
               make_loader(val_set, s.batch, device=device), resume=True, **options)
    if (first.steps, rest.steps) != (steps // 2, steps):
        raise RuntimeError(f"resume went from step {first.steps} to {rest.steps}, expected {steps // 2} -> {steps}")
    cm = evaluate(model, make_loader(val_set, s.batch, device=device), len(CLASSES), device)
    reloaded = load_model(checkpoint, map_location=device).to(device)
    if use_channels_last(None, device):
        reloaded = reloaded.to(memory_format=torch.channels_last)
    images = val_set.images[:2].float() / 255
    same = float((predict(reloaded, images, device=device) == predict(model, images, device=device)).mean())
    if same < 0.999:
        raise RuntimeError(f"the reloaded checkpoint predicts {100 * (1 - same):.2f} % of pixels differently")
    losses = rest.step_loss
    return {"precision": precision.name, "steps": rest.steps, "losses_finite": all(map(math.isfinite, losses)),
            # the whole tiny run's rate, warm-up included: a sign of life (throughput measures speed)
            "images_per_s": round(rest.images_per_s, 1), "peak_memory_mib": peak_memory_mib(device),
            "val_miou_untrained": round(cm.miou(), 4), "reload_same_pixels": round(same, 5)}


# -- fp16 with a gradient scaler, forced --------------------------------------------------------
def fp16_scaler(ctx: Context, cap_s: float) -> dict:
    forced = Precision("cuda", torch.float16, True, "forced: fp16 with a GradScaler, as compute capability 7.x")
    results = attempt_each({name: (lambda n=name: train_with_precision(n, ctx, forced)) for name in ("fcn8s", "gscnn")})
    summary = "; ".join(f"{n}: losses {'finite' if r['losses_finite'] else 'NOT finite'}, {r['skipped_steps']} "
                        f"skipped of {r['steps']}, scale {r['final_scale']:g}"
                        for n, r in results.items() if r["status"] == "ok")
    return {"models": results, "summary": summary + problems(results), "failed": any_failed(results)}


@contextlib.contextmanager
def forced_precision(precision: Precision):
    """Make ``fit`` train with ``precision`` whatever the policy would choose for this GPU.

    The trainer asks :func:`~course_utils.precision.choose_precision` by the name its
    module imported; that name is replaced for the duration."""
    from course_utils.training.loop import Trainer

    module = sys.modules[Trainer.__module__]
    if not callable(getattr(module, "choose_precision", None)):
        raise RuntimeError(f"cannot force a precision: {module.__name__} no longer calls choose_precision by "
                           "that name; update forced_precision in tools/gpu_check.py")
    original = module.choose_precision
    module.choose_precision = lambda device, amp=None: precision
    try:
        yield
    finally:
        module.choose_precision = original


def train_with_precision(name: str, ctx: Context, precision: Precision) -> dict:
    s, device = ctx.sizes, ctx.device
    train_set = SynthCity(max(s.n_train, s.batch * s.fp16_steps), s.size, seed=0, augment=True)
    torch.manual_seed(0)
    model = build_model(name, len(CLASSES), width=s.width)
    init_scale = torch.amp.GradScaler(precision.device_type).get_scale()
    scales, used = [], []

    def record(trainer, event):
        if event == "step":
            used.append(trainer.precision.name)
            scales.append(trainer.scaler.get_scale() if trainer.scaler is not None else math.nan)

    with forced_precision(precision):
        history = fit(model, make_loader(train_set, s.batch, shuffle=True, device=device), None, epochs=1,
                      lr=5e-3, device=device, callbacks=[record, StopAt(s.fp16_steps)],
                      progress=False)
    if set(used) != {precision.name}:
        raise RuntimeError(f"the trainer used {sorted(set(used))}, not the forced {precision.name}")
    # GradScaler halves the scale exactly when a step's gradients overflowed and it skipped it.
    skipped = sum(b < a for a, b in zip([init_scale] + scales, scales))
    return {"precision": precision.name, "steps": history.steps,
            "losses_finite": all(map(math.isfinite, history.step_loss)),
            "first_loss": round(history.step_loss[0], 4), "last_loss": round(history.step_loss[-1], 4),
            "skipped_steps": int(skipped), "initial_scale": init_scale, "final_scale": scales[-1],
            "scales": scales}


# -- synchronisations per step ------------------------------------------------------------------
SYNC_MESSAGE = "synchronizing CUDA operation"


def syncs(ctx: Context, cap_s: float) -> dict:
    """Training steps of the plan's model (small scenes: the count does not depend on their
    size), counting the warnings of ``set_sync_debug_mode("warn")`` over ``sync_steps`` steps
    after ``sync_warmup``, and where in the code they come from."""
    s, plan = ctx.sizes, ctx.plan
    data = SynthCity(s.batch * (s.sync_warmup + s.sync_steps), s.size, seed=0, augment=True)
    torch.manual_seed(0)
    model = build_model("fcn8s", len(CLASSES), width=plan["width"])
    first, last = s.sync_warmup, s.sync_warmup + s.sync_steps

    def window(trainer, event):
        if event == "step" and trainer.step == first:
            torch.cuda.synchronize(ctx.device)
            torch.cuda.set_sync_debug_mode("warn")
        elif event == "step" and trainer.step >= last:
            torch.cuda.set_sync_debug_mode(0)
            trainer.stop()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit(model, make_loader(data, s.batch, shuffle=True, device=ctx.device), None, epochs=1, lr=plan["lr"],
                amp=plan.get("amp"), device=ctx.device, callbacks=[window], progress=False)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    found = [w for w in caught if SYNC_MESSAGE in str(w.message)]
    where: dict[str, int] = {}
    for w in found:
        where[source_line(w)] = where.get(source_line(w), 0) + 1
    where = dict(sorted(where.items(), key=lambda kv: -kv[1]))
    per_step = len(found) / s.sync_steps
    return {"steps": s.sync_steps, "after_steps": s.sync_warmup, "syncs": len(found),
            "syncs_per_step": round(per_step, 3), "log_every": _default_log_every(), "where": where,
            "summary": f"{per_step:.2f} syncs per step over {s.sync_steps} steps"
                       + (f" (most at {next(iter(where))})" if where else "")}


def source_line(w: warnings.WarningMessage) -> str:
    """Where a warning was raised, relative to the repository when it is in it."""
    path = Path(w.filename)
    return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{w.lineno}"


def _default_log_every() -> int:
    """How many steps the trainer lets pass between reading the losses back (one sync each)."""
    from course_utils.training import TrainConfig

    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "log_every")


# -- FCN's upsampling: polyphase or ConvTranspose2d ---------------------------------------------
def upsampling(ctx: Context, cap_s: float) -> dict:
    from course_utils.models import BilinearUpsample
    from course_utils.models.fcn import upsampling_method

    if ctx.cuda:
        batch, size = ctx.plan["batch_size"], ctx.plan["size"]
    else:       # the CPU benchmark's setting: FCN-8s's 8x upsampling at batch 8, 128 px
        batch, size = 8, 128
    if ctx.sizes is QUICK:
        batch, size = 2, 32
    precision = choose_precision(ctx.device)
    torch.manual_seed(0)
    x = torch.randn(batch, len(CLASSES), size // 8, size // 8, device=ctx.device, requires_grad=True)
    layers = {method: BilinearUpsample(len(CLASSES), 8, method=method).to(ctx.device)
              for method in ("polyphase", "transposed")}
    times = time_interleaved(layers, x, (size, size), precision, ctx.sizes.upsampling_reps)
    best = {method: min(t) for method, t in times.items()}
    faster = min(best, key=best.get)
    auto = upsampling_method(ctx.device.type)
    if ctx.sizes is QUICK:
        advice = " (quick: too small to decide)"
    else:
        advice = "" if auto == faster else " (change POLYPHASE_DEVICES in course_utils/models/fcn.py)"
    return {"batch": batch, "size": size, "channels": len(CLASSES), "factor": 8, "precision": precision.name,
            "reps": len(times["polyphase"]),
            "polyphase_ms": round(best["polyphase"], 3), "transposed_ms": round(best["transposed"], 3),
            "polyphase_median_ms": round(statistics.median(times["polyphase"]), 3),
            "transposed_median_ms": round(statistics.median(times["transposed"]), 3),
            "faster": faster, "auto_uses": auto, "auto_is_faster": auto == faster,
            "summary": f"forward+backward, best of {len(times['polyphase'])}: polyphase {best['polyphase']:.2f} ms, "
                       f"ConvTranspose2d {best['transposed']:.2f} ms ({precision.name}): {faster} faster; "
                       f"auto uses {auto}{advice}"}


def time_interleaved(layers: dict, x, size, precision: Precision, reps: int) -> dict:
    """Milliseconds of each layer's forward + backward on ``x``, ``reps`` times each after
    warm-up rounds, the layers taking turns (so a busy moment of the machine falls on both)."""
    times = {name: [] for name in layers}
    for i in range(reps + 3):
        for name, layer in layers.items():
            synchronize(x.device)
            start = time.perf_counter()
            with precision.autocast():
                y = layer(x, size)
            y.float().square().mean().backward()
            synchronize(x.device)
            if i >= 3:
                times[name].append(1e3 * (time.perf_counter() - start))
    return times


# -- DistributedDataParallel on one rank: NCCL, SyncBatchNorm, channels_last -------------------
def ddp(ctx: Context, cap_s: float) -> dict:
    out = ctx.workdir / "ddp_child.json"
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0",
               WORLD_SIZE="1", PYTHONWARNINGS="error", PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--ddp-child", str(out), "--device", ctx.device.type]
    cmd += ["--quick"] if ctx.sizes is QUICK else []
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=max(cap_s - 5, 10))
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"exit code {done.returncode}: {last_lines(done.stderr)}")
    result = json.loads(out.read_text())
    result["summary"] = (f"{result['backend']}, {result['sync_bn_layers']} SyncBatchNorm layers, channels_last "
                         f"{result['channels_last']}, {result['steps']} steps, losses "
                         f"{'finite' if result['losses_finite'] else 'NOT finite'}, no warnings")
    return result


def ddp_child(out: Path, sizes: Sizes, device_type: str = "cuda") -> int:
    """In a fresh process (``RANK``/``WORLD_SIZE``/``MASTER_*`` set by :func:`ddp`): the CLI's
    steps for a world of one, which the CLI itself runs without a process group. NCCL and
    SyncBatchNorm on CUDA; gloo without SyncBatchNorm (which DDP refuses off the GPU) on
    the CPU, where the tests run it."""
    import torch.distributed as dist
    from torch import nn

    from course_utils.training import ShardSampler, prepare_model

    cuda = device_type == "cuda"
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", init_method="env://", **({"device_id": device} if cuda else {}))
    try:
        train_set = SynthCity(sizes.n_train, sizes.size, seed=0, augment=True)
        val_set = SynthCity(sizes.n_val, sizes.size, seed=1)
        torch.manual_seed(0)
        model = build_model("fcn8s", len(CLASSES), width=sizes.width)
        model = prepare_model(model, device, channels_last=True, ddp=True, sync_bn=cuda)
        sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=0,
                                                      drop_last=True)
        history = fit(model, make_loader(train_set, sizes.batch, sampler=sampler, device=device),
                      make_loader(val_set, sizes.batch, device=device, sampler=ShardSampler(len(val_set), 0, 1)),
                      epochs=1, lr=5e-3, device=device, channels_last=True, progress=False)
        inner = model.module
        weights = [p for p in inner.parameters() if p.ndim == 4]
        result = {"backend": dist.get_backend(), "world_size": dist.get_world_size(),
                  "wrapped": type(model).__name__,
                  "sync_bn_layers": sum(isinstance(m, nn.SyncBatchNorm) for m in inner.modules()),
                  "channels_last": all(p.is_contiguous(memory_format=torch.channels_last) for p in weights),
                  "steps": history.steps, "losses_finite": all(map(math.isfinite, history.step_loss)),
                  "val_miou": round(history.val_miou[-1], 4) if history.val_miou else None,
                  "warnings_are_errors": os.environ.get("PYTHONWARNINGS") == "error"}
        if cuda and result["sync_bn_layers"] == 0:
            raise RuntimeError("SyncBatchNorm was asked for but the model has none")
        out.write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- two GPUs: the command line under torchrun --------------------------------------------------
def ddp_2gpu(ctx: Context, cap_s: float) -> dict:
    if torch.cuda.device_count() < 2:
        raise Skip(f"{torch.cuda.device_count()} GPU")
    out = ctx.workdir / "ddp2"
    script = Path(sys.executable).with_name("torchrun")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]
    s = ctx.sizes
    cmd = [*launcher, "--standalone", "--nproc_per_node=2", "-m", "course_utils.train", "--model", "fcn8s",
           "--data", "synthcity", "--size", str(s.size), "--n-train", str(4 * s.n_train), "--n-val", str(s.n_val),
           "--epochs", "1", "--batch-size", str(2 * s.batch), "--pretrained-encoder", "no", "--quiet", "--sync-bn",
           "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1", PYTHONWARNINGS="error")
    env.pop("COURSE_DEVICE", None)
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=max(cap_s - 5, 10))
    if done.returncode != 0:
        raise RuntimeError(f"exit code {done.returncode}: {last_lines(done.stderr)}")
    line = [s for s in done.stdout.splitlines() if s.startswith("stopped by")]
    return {"summary": line[-1][:100] if line else "finished", "stdout": done.stdout[-2000:]}


# -- the zoo in CUDA bf16 against the manifest's CPU numbers ------------------------------------
def zoo(ctx: Context, cap_s: float) -> dict:
    from course_utils.zoo import load_zoo_model, read_zoo_manifest

    manifest = read_zoo_manifest()
    recipe = manifest.get("recipe", {})
    n_val = ctx.sizes.zoo_val or recipe.get("n_val", 200)
    val_set = SynthCity(n_val, recipe.get("size", 128), seed=recipe.get("val_seed", 1))
    loader = make_loader(val_set, 32, device=ctx.device)
    precision = zoo_precision(ctx.device)
    def one(name, entry):
        model = load_zoo_model(name, device=ctx.device)
        miou = evaluate(model, loader, len(CLASSES), ctx.device, precision=precision).miou()
        cpu = entry.get("val_miou")
        return {"miou": round(miou, 4), "manifest_cpu_miou": cpu,
                "difference": round(miou - cpu, 4) if cpu is not None and n_val == recipe.get("n_val") else None}

    results = attempt_each({name: (lambda n=name, e=entry: one(n, e)) for name, entry in manifest["models"].items()})
    diffs = {n: r.get("difference") for n, r in results.items()}
    summary = (f"mIoU {precision.device_type} {precision.name} - manifest: "
               + ", ".join(f"{n} {d:+.4f}" if d is not None else f"{n} -" for n, d in diffs.items())
               + ("" if n_val == recipe.get("n_val") else f" (quick: {n_val} scenes, no comparison)")
               + problems(results))
    return {"scenes": n_val, "device": str(ctx.device), "precision": precision.name, "models": results,
            "summary": summary, "failed": any_failed(results)}


def zoo_precision(device) -> Precision:
    """bf16 autocast on CUDA (what training uses on the GPUs that have it); fp32 elsewhere,
    which reproduces the manifest's CPU numbers."""
    if torch.device(device).type == "cuda":
        return Precision("cuda", torch.bfloat16, False, "bf16 autocast (zoo check)")
    return Precision(torch.device(device).type, reason="fp32 (zoo check)")


# -- throughput of notebook 06's GPU plan --------------------------------------------------------
# Each variant changes one thing from the notebook's own cells; a variant is a function of
# the plan (a dict: notebook 06's keys) and the scenes, returning the training loader, the
# batch size and fit's options. To try another idea, add a function here.
def as_shipped(plan, data, device):
    return make_loader(data, plan["batch_size"], shuffle=True, device=device, seed=0), plan["batch_size"], {}


def loader_workers(plan, data, device):
    workers = max(1, min(8, (os.cpu_count() or 2) - 1))
    loader = make_loader(data, plan["batch_size"], shuffle=True, device=device, seed=0, num_workers=workers)
    return loader, plan["batch_size"], {}


def resident_on_device(plan, data, device):
    return ResidentBatches(data, plan["batch_size"], device), plan["batch_size"], {}


def compiled(plan, data, device):
    loader, batch, _ = as_shipped(plan, data, device)
    return loader, batch, {"compile": True}


def large_batch(plan, data, device):
    batch = 4 * plan["batch_size"]
    return make_loader(data, batch, shuffle=True, device=device, seed=0), batch, {}


def augmented_in_loader(plan, data, device):
    """Only where ``make_loader`` can choose where augmentation runs: the per-sample path."""
    return (make_loader(data, plan["batch_size"], shuffle=True, device=device, seed=0, augment_on="loader"),
            plan["batch_size"], {})


VARIANTS = {"as shipped": as_shipped, "loader workers": loader_workers, "resident on device": resident_on_device,
            "large batch (4x)": large_batch}
if "augment_on" in inspect.signature(make_loader).parameters:
    VARIANTS["augmented in the loader"] = augmented_in_loader
VARIANTS["compiled"] = compiled     # last: compiling can take a minute, and what comes before is kept


class ResidentBatches:
    """All the scenes on the device as 8-bit tensors, batches of a fresh permutation each
    epoch, made float there; no augmentation. What a loader costs when it costs nothing."""

    def __init__(self, dataset, batch_size: int, device):
        self.images = dataset.images.to(device)
        self.labels = dataset.labels.to(device)
        self.batch_size = batch_size
        self._generator = torch.Generator(device=device).manual_seed(0)

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.images), device=self.images.device, generator=self._generator)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.images[idx].float().div_(255), self.labels[idx].long()


def throughput(ctx: Context, cap_s: float, variants: dict | None = None) -> dict:
    plan, s, variants = dict(ctx.plan), ctx.sizes, variants or VARIANTS
    if s.max_plan_size:
        plan["size"] = min(plan["size"], s.max_plan_size)
    started = time.monotonic()
    data = SynthCity(min(plan["n_train"], s.scenes), plan["size"], seed=0, augment=True)
    left = cap_s - (time.monotonic() - started)
    # Warm-up, compilation and the data set's moves take time too: measure for at most
    # variant_s, less when the time left is short.
    seconds = max(1.0, min(s.variant_s, left / len(variants) - 15))
    deadline = started + cap_s - 5
    results = attempt_each({name: (lambda v=variant: measure_variant(v, plan, data, ctx, seconds))
                            for name, variant in variants.items()},
                           time_left=lambda: deadline - time.monotonic(), needs_s=seconds + 10)
    summary = ", ".join(f"{n} {r['images_per_s']:.0f}/s ({r['gpu_utilisation_percent']}% GPU)"
                        for n, r in results.items() if r["status"] == "ok")
    return {"plan": plan, "plan_source": ctx.plan_source, "scenes": len(data), "seconds_per_variant": round(seconds, 1),
            "variants": results, "summary": "images/s: " + summary + problems(results), "failed": any_failed(results)}


def measure_variant(variant, plan: dict, data, ctx: Context, seconds: float) -> dict:
    """Train the plan's model through ``variant`` and time ``seconds`` of steady state."""
    loader, batch, options = variant(plan, data, ctx.device)
    torch.manual_seed(0)
    model = build_model("fcn8s", len(CLASSES), width=plan["width"])
    clock = StepClock(ctx.device, ctx.sizes.variant_warmup, seconds)
    reset_peak(ctx.device)
    with GpuUtilisation(ctx.device) as util:
        fit(model, loader, None, epochs=10_000, lr=plan["lr"], amp=plan.get("amp"), device=ctx.device,
            callbacks=[clock, util.callback], progress=False, **options)
    if clock.steps == 0:
        raise RuntimeError(f"no steps measured (the loader has {len(loader)} batches per epoch)")
    return {"batch": batch, "options": options, "steps": clock.steps, "seconds": round(clock.seconds, 2),
            "images_per_s": round(clock.steps * batch / clock.seconds, 1),
            "ms_per_step": round(1e3 * clock.seconds / clock.steps, 2),
            "gpu_utilisation_percent": util.mean(), "utilisation_samples": len(util.samples),
            "peak_memory_mib": peak_memory_mib(ctx.device), "loader": type(loader).__name__}


class StepClock:
    """A callback timing ``seconds`` of training after ``warmup`` steps, with the device
    synchronised at both ends, then stopping the run."""

    def __init__(self, device, warmup: int, seconds: float):
        self.device, self.warmup, self.budget = device, warmup, seconds
        self.t0 = self.step0 = None
        self.steps, self.seconds = 0, 0.0

    def __call__(self, trainer, event):
        if event != "step":
            return
        if self.t0 is None and trainer.step >= self.warmup:
            synchronize(self.device)
            self.t0, self.step0 = time.perf_counter(), trainer.step
        elif self.t0 is not None and time.perf_counter() - self.t0 >= self.budget:
            synchronize(self.device)
            self.seconds = time.perf_counter() - self.t0
            self.steps = trainer.step - self.step0
            trainer.stop()


class GpuUtilisation:
    """Samples the GPU's utilisation (NVML through ``torch.cuda.utilization``, else
    nvidia-smi) in a thread, between the first and the last timed step."""

    def __init__(self, device, every_s: float = 0.25):
        self.device, self.every_s = device, every_s
        self.samples: list[float] = []
        self._sampling = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.device.type == "cuda" and self._read() is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()

    def callback(self, trainer, event):
        self._sampling.set()        # from the first finished step on

    def _read(self):
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # noqa: BLE001 - no NVML bindings: nvidia-smi
            out = _nvidia_smi("utilization.gpu")
            return float(out[self.device.index or 0]) if out else None

    def _run(self):
        while not self._done.wait(self.every_s):
            if self._sampling.is_set():
                value = self._read()
                if value is not None:
                    self.samples.append(value)

    def mean(self):
        return round(statistics.fmean(self.samples), 1) if self.samples else None


def notebook_plan(path: Path = NOTEBOOK_06) -> tuple[dict, str]:
    """Notebook 06's GPU plan: the ``plan = dict(...)`` assigned under ``if device.type == "cuda":``."""
    try:
        cells = json.loads(path.read_text())["cells"]
        for cell in cells:
            if cell.get("cell_type") != "code":
                continue
            try:
                tree = ast.parse("".join(cell["source"]))
            except SyntaxError:       # a cell with IPython magics
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.If) and "cuda" in ast.unparse(node.test):
                    for stmt in node.body:
                        plan = _plan_of(stmt)
                        if plan is not None:
                            return plan, f"{path.relative_to(ROOT)}"
        return dict(FALLBACK_PLAN), f"fallback: no CUDA plan found in {path.name}"
    except Exception as err:  # noqa: BLE001 - the check still runs, and says so
        return dict(FALLBACK_PLAN), f"fallback: {path.name} unreadable ({type(err).__name__}: {err})"


def _plan_of(stmt):
    if not (isinstance(stmt, ast.Assign) and [ast.unparse(t) for t in stmt.targets] == ["plan"]):
        return None
    value = stmt.value
    if isinstance(value, ast.Call) and ast.unparse(value.func) == "dict" and not value.args:
        return {kw.arg: _plan_value(kw.value) for kw in value.keywords}
    return ast.literal_eval(value)


def _plan_value(node):
    """A plan entry: a literal, or arithmetic on literals with min/max (the scaled learning rate)."""
    allowed = (ast.Expression, ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop, ast.Call,
               ast.Name, ast.Load, ast.Tuple, ast.List)
    tree = ast.Expression(node)
    for sub in ast.walk(tree):
        if not isinstance(sub, allowed) or isinstance(sub, ast.Name) and sub.id not in ("min", "max"):
            raise ValueError(f"plan entries must be literals or min/max of arithmetic, got {ast.unparse(node)!r}")
    return eval(compile(tree, "<plan>", "eval"), {"__builtins__": {}, "min": min, "max": max})  # noqa: S307


# -- running the parts ---------------------------------------------------------------------------
class Skip(Exception):
    """A part that does not apply here (the reason is the message)."""


class PartTimeout(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    run: object
    cap_s: float        # at most this long
    cuda_only: bool


PARTS = (Part("environment", environment, 30, False), Part("models", models, 150, False),
         Part("fp16_scaler", fp16_scaler, 60, True), Part("syncs", syncs, 45, True),
         Part("upsampling", upsampling, 30, False), Part("ddp", ddp, 90, True), Part("zoo", zoo, 60, True),
         Part("ddp_2gpu", ddp_2gpu, 120, True), Part("throughput", throughput, 330, True))


def run_part(part: Part, ctx: Context, deadline: float) -> dict:
    if part.cuda_only and not ctx.cuda:
        return {"status": "skipped", "reason": "no CUDA"}
    cap = min(part.cap_s, deadline - time.monotonic())
    if part.name == "throughput":     # last: it takes what is left
        cap = deadline - time.monotonic()
    if cap < 5:
        return {"status": "skipped", "reason": "time budget spent"}
    t0 = time.monotonic()
    try:
        with time_limit(cap):
            result = part.run(ctx, cap)
        status = "failed" if result.pop("failed", False) else "ok"
        record = {"status": status, "result": result}
    except Skip as why:
        record = {"status": "skipped", "reason": str(why)}
    except Exception as err:  # noqa: BLE001 - a part that fails is recorded; the next one runs
        record = {"status": "failed", "error": error_text(err), "traceback": traceback.format_exc()[-3000:]}
    finally:
        tidy(ctx.device)
    record.update(seconds=round(time.monotonic() - t0, 1), cap_s=round(cap, 1))
    return record


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`PartTimeout` in the main thread after ``seconds`` (checked between
    Python bytecodes, so a long kernel finishes first)."""
    def expire(signum, frame):
        raise PartTimeout(f"over its time cap of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def attempt(job) -> dict:
    """``{"status": "ok", **job()}``, or the error as a record."""
    try:
        return {"status": "ok", **job()}
    except PartTimeout:
        raise
    except Exception as err:  # noqa: BLE001 - one model's failure is that model's record
        return {"status": "failed", "error": error_text(err), "traceback": traceback.format_exc()[-2000:]}


def attempt_each(jobs: dict, time_left=None, needs_s: float = 0.0) -> dict:
    """:func:`attempt` for each of ``jobs`` (name -> function), in order. When the part's
    time cap strikes, the job running then is recorded as failed and the rest as skipped,
    so what was measured stays; so are those for which ``time_left()`` is under ``needs_s``."""
    results, out_of_time = {}, False
    for name, job in jobs.items():
        if out_of_time or (time_left is not None and time_left() < needs_s):
            results[name] = {"status": "skipped", "reason": "time budget spent"}
            continue
        try:
            results[name] = attempt(job)
        except PartTimeout as err:
            results[name] = {"status": "failed", "error": f"PartTimeout: {err}"}
            out_of_time = True
    return results


def any_failed(results: dict) -> bool:
    return any(r["status"] == "failed" for r in results.values())


def problems(results: dict) -> str:
    """"; FAILED: a, b; skipped: c" for the sub-results that did not run through, else ""."""
    text = ""
    for status, label in (("failed", "FAILED"), ("skipped", "skipped")):
        names = [n for n, r in results.items() if r["status"] == status]
        text += f"; {label}: {', '.join(names)}" if names else ""
    return text


def error_text(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def last_lines(text: str, n: int = 3) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])[:500] if lines else "(no output)"


def tidy(device) -> None:
    if device.type == "cuda":
        with contextlib.suppress(Exception):
            torch.cuda.set_sync_debug_mode(0)
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    # ru_maxrss is in KiB on Linux: the whole process's peak, not one part's.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, 1)


# -- the report -----------------------------------------------------------------------------------
def table(parts: dict) -> str:
    rows = [("part", "status", "s", "result")]
    for name, record in parts.items():
        status = record["status"] + (f" ({record['reason']})" if record["status"] == "skipped" else "")
        text = record.get("result", {}).get("summary") or record.get("error") or ""
        rows.append((name, status, f"{record['seconds']:.0f}" if "seconds" in record else "", text))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(line.rstrip() for line in lines)


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(report, indent=2, default=str) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of every part (seconds)")
    p.add_argument("--device", choices=("cuda", "mps", "cpu"), default=None,
                   help="the device to check (default: course_utils.device.select_device())")
    p.add_argument("--parts", default=None,
                   help=f"comma-separated parts to run (default all: {','.join(part.name for part in PARTS)})")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds the whole check may take")
    p.add_argument("--ddp-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.ddp_child is not None:
        return ddp_child(args.ddp_child, sizes, args.device or "cuda")
    chosen = [part for part in PARTS if args.parts is None or part.name in args.parts.split(",")]
    unknown = set(args.parts.split(",")) - {part.name for part in PARTS} if args.parts else set()
    if unknown:
        p.error(f"--parts must name parts among {', '.join(part.name for part in PARTS)}; got {sorted(unknown)}")

    from course_utils.device import select_device

    started, deadline = time.time(), time.monotonic() + args.budget
    device = select_device(args.device)
    plan, plan_source = notebook_plan()
    report = {"tool": "tools/gpu_check.py", "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "device": str(device), "quick": args.quick, "budget_s": args.budget, "plan": plan,
              "plan_source": plan_source, "sizes": dataclasses.asdict(sizes), "seconds": 0.0, "parts": {}}
    print(f"device {device}; {'quick check' if args.quick else 'full check'}, at most {args.budget:.0f} s; "
          f"writing {args.out}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as workdir:
        ctx = Context(device, sizes, Path(workdir), plan, plan_source)
        for part in chosen:
            record = run_part(part, ctx, deadline)
            report["parts"][part.name] = record
            report["seconds"] = round(time.time() - started, 1)
            write_report(args.out, report)
            print(f"  {part.name}: {record['status']} ({record.get('seconds', 0):.0f} s)", flush=True)
    print()
    print(table(report["parts"]))
    print(f"\n{len(chosen)} parts in {report['seconds']:.0f} s; JSON: {args.out.resolve()}")
    return 1 if any(r["status"] == "failed" for r in report["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
