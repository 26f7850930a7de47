#!/usr/bin/env python3
"""BatchNorm against GroupNorm by batch size, trained long enough to mean something.

usage: python tools/norm_study.py [--seeds 0 1] [--batch-sizes 1 2 8 16] [--images 24576]
                                  [--out data/norm_study/deeplabv3_64px.json]

Notebook 07 (section 5) shows the two exact facts (BatchNorm's output depends on the batch
and differs between training and evaluation; GroupNorm's does not) live, in seconds, and
reads this study's JSON for what they cost (sections 5 and 6). The
*effect* Wu and He report (ECCV 2018, Figure 1: BatchNorm's error grows as the batch
shrinks, GroupNorm's stays flat) needs trained models and several seeds, too long for a
notebook cell on two CPU cores, so it is measured here once and the numbers are data.

Every run sees the same number of training images (``--images``, drawn in passes over the
same ``--scenes`` scenes), so a batch of 1 takes 16 times the steps of a batch of 16; only
the norm, the batch size and the seed change. The model is a small DeepLabV3 (width 8,
output stride 16, no dropout) on 64x64 SynthCity scenes; Adam with a learning rate of 1e-3
times the square root of the batch size (the usual scaling for Adam; the paper scales SGD's
linearly). The seed sets the initial weights and the order of the scenes. Each run is
scored on validation scenes of another seed in eval mode (BatchNorm with its running
statistics, as deployed); BatchNorm runs also in train mode with validation batches of
the training batch size (the statistics it saw while training), and by how far each
image's own channel means lie from the running means, in running standard deviations.

The JSON (written after every run, so a stopped study keeps what it finished) holds the
command, the settings, and one entry per (norm, batch size, seed), with its learning curve
(validation mIoU at ``--evals`` points, by training images seen).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_utils.atomic import write_json_atomic  # noqa: E402
from course_utils.datasets import CLASSES, generate  # noqa: E402
from course_utils.labels import IGNORE_INDEX  # noqa: E402
from course_utils.metrics import ConfusionMatrix  # noqa: E402
from course_utils.models import build_model  # noqa: E402

SIZE, TRAIN_SEED, VAL_SEED = 64, 1, 2
MODEL = {"name": "deeplabv3", "width": 8, "output_stride": 16, "dropout": 0.0}


def val_scores(model, xv, yv, batch_size):
    """(loss, mIoU, logits) on the validation scenes, fed in batches of ``batch_size``."""
    cm, logits = ConfusionMatrix(len(CLASSES)), []
    with torch.no_grad():
        for i in range(0, len(xv), batch_size):
            out = model(xv[i:i + batch_size])
            logits.append(out["out"] if model.training else out)     # training mode returns a dict
            cm.update(logits[-1], yv[i:i + batch_size])
    logits = torch.cat(logits)
    return F.cross_entropy(logits, yv, ignore_index=IGNORE_INDEX).item(), cm.miou(), logits


def bn_stat_gap(model, xv):
    """Mean over BatchNorm layers, channels and validation images of |the image's own channel
    mean - the running mean|, in running standard deviations (0 for a perfect match)."""
    gaps = []

    def hook(bn, inputs, out):
        own_mean = inputs[0].mean((0, 2, 3))
        gaps.append(((own_mean - bn.running_mean).abs() / (bn.running_var + bn.eps).sqrt()).mean())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval()
    with torch.no_grad():
        for i in range(len(xv)):
            model(xv[i:i + 1])
    for h in handles:
        h.remove()
    return float(torch.stack(gaps).mean())


def train_and_score(norm, batch_size, seed, xs, ys, xv, yv, n_images, evals: int = 4) -> dict:
    torch.manual_seed(seed)
    options = {k: v for k, v in MODEL.items() if k != "name"}
    model = build_model(MODEL["name"], len(CLASSES), norm=norm, **options)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3 * batch_size ** 0.5)
    order = torch.Generator().manual_seed(seed)
    steps = n_images // batch_size
    checkpoints = {round(steps * k / evals) for k in range(1, evals + 1)}
    curve = []
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        if step * batch_size % len(xs) == 0:
            perm = torch.randperm(len(xs), generator=order)
        i = step * batch_size % len(xs)
        idx = perm[i:i + batch_size]
        loss = F.cross_entropy(model(xs[idx])["out"], ys[idx], ignore_index=IGNORE_INDEX)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step + 1 in checkpoints and step + 1 < steps:
            # The learning curve, in eval mode: has the run flattened out by its end?
            model.eval()
            curve.append([(step + 1) * batch_size, round(val_scores(model, xv, yv, len(xv))[1], 5)])
            model.train()
    train_time = time.perf_counter() - t0
    model.eval()
    val_loss, miou, logits = val_scores(model, xv, yv, len(xv))
    curve.append([steps * batch_size, round(miou, 5)])
    run = {"norm": norm, "batch_size": batch_size, "seed": seed, "steps": steps,
           "val_loss": round(val_loss, 5), "val_miou": round(miou, 5), "curve": curve,
           "train_time_s": round(train_time, 1)}
    if norm == "batch":
        model.train()
        _, train_miou, train_logits = val_scores(model, xv, yv, batch_size)
        run["train_mode_miou"] = round(train_miou, 5)
        run["stat_gap_std"] = round(bn_stat_gap(model, xv), 4)
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 8, 16])
    p.add_argument("--norms", nargs="+", default=["batch", "group"], choices=["batch", "group"])
    p.add_argument("--images", type=int, default=24576, help="training images per run (same for every run)")
    p.add_argument("--evals", type=int, default=4, help="validation points along each run (the last at its end)")
    p.add_argument("--scenes", type=int, default=1536, help="distinct training scenes")
    p.add_argument("--val-scenes", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch threads (small batches run best on one)")
    p.add_argument("--out", type=Path, default=ROOT / "data" / "norm_study" / "deeplabv3_64px.json")
    args = p.parse_args(argv)
    if min(args.batch_sizes) < 1 or any(args.images % b for b in args.batch_sizes):
        p.error(f"--batch-sizes must be >= 1 and divide --images ({args.images}), got {args.batch_sizes}")
    if min(args.seeds) < 0 or len(set(args.seeds)) != len(args.seeds):
        p.error("--seeds must be distinct integers >= 0")
    torch.set_num_threads(args.threads)
    xs, ys = map(torch.from_numpy, generate(args.scenes, SIZE, seed=TRAIN_SEED))
    xv, yv = map(torch.from_numpy, generate(args.val_scenes, SIZE, seed=VAL_SEED))
    argv_list = sys.argv[1:] if argv is None else list(argv)
    result = {
        "command": " ".join(["python tools/norm_study.py"] + [shlex.quote(a) for a in argv_list]),
        "what": "BatchNorm vs GroupNorm by batch size: same images seen per run, several seeds; "
                "validation mIoU in eval mode",
        "model": MODEL, "size": SIZE, "train_scenes": args.scenes, "train_seed": TRAIN_SEED,
        "val_scenes": args.val_scenes, "val_seed": VAL_SEED, "images_per_run": args.images,
        "optimizer": "Adam, lr 1e-3 * sqrt(batch size), no schedule",
        "torch_version": torch.__version__, "threads": torch.get_num_threads(), "runs": [],
    }
    for seed in args.seeds:
        for norm in args.norms:
            for bs in args.batch_sizes:
                run = train_and_score(norm, bs, seed, xs, ys, xv, yv, args.images, args.evals)
                result["runs"].append(run)
                write_json_atomic(args.out, result)
                print(f"seed {seed} {norm:5s}norm batch {bs:2d}: val mIoU {run['val_miou']:.4f} "
                      f"({run['steps']} steps, {run['train_time_s']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
