#!/usr/bin/env python3
"""Training-seed variance: one zoo model's recipe retrained with several seeds.

usage: python tools/seed_variance.py [--model fcn8s] [--seeds 0 1 2 3] [--set KEY=VALUE ...]
                                     [--seed0-checkpoint PATH] [--out data/seed_variance/fcn8s.json]

The paired bootstrap of notebook 08 resamples the *test images*: it says how much a
score would move with another test set of the same size, for fixed weights. It says
nothing about how much the score moves when the same recipe is trained again with
another random seed (initialisation of the layers not taken from the pre-trained
encoder, order of the batches, augmentation draws). This script measures that second
spread: it trains ``--model`` with the zoo's recipe (``course_utils.zoo.RECIPE``), only
``seed`` changed, and scores every run on notebook 08's test set (300 SynthCity scenes,
seed 2, 128 px). The JSON (written after every seed, so a stopped run keeps its
results) holds the command, the recipe, and per seed the test mIoU, per-class IoU, the
boundary F at 2 px (notebook 08's protocol: the course's boundary rule, counts summed over
the test set; DAVIS's protocol: its boundary rule, the mean of per-image scores; and the
pole's own boundary F, per class, course protocol) and the validation mIoU. Seed 0 is the
zoo's own recipe: its run reproduces the committed checkpoint's scores on the same CPU and
thread count.

``--set KEY=VALUE`` changes one model option of the zoo's (read as the training CLI's
``--model-option``), to measure a variant with the same recipe (``--set
shape_level=c2``, ``--set aux=true``). ``--seed0-checkpoint`` scores an existing checkpoint as seed 0
instead of training it again (it must hold the same options: it is loaded strictly).

The checkpoints go to a temporary folder and are not kept: only the numbers are data.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_utils.atomic import write_json_atomic  # noqa: E402
from course_utils.cli.common import parse_model_options  # noqa: E402
from course_utils.datasets import CLASSES, SynthCity  # noqa: E402
from course_utils.metrics import ConfusionMatrix, boundary_f1  # noqa: E402
from course_utils.models import build_model  # noqa: E402
from course_utils.training import load_checkpoint, load_model, predict  # noqa: E402
from course_utils.zoo import RECIPE, ZOO_MODELS, train_zoo_model  # noqa: E402

# Notebook 08's test set.
TEST = {"n": 300, "size": 128, "seed": 2}


def test_scores(model) -> dict:
    test = SynthCity(TEST["n"], TEST["size"], seed=TEST["seed"])
    pred = predict(model, test.images.float() / 255, batch_size=32)
    target = test.labels.long().numpy()
    cm = ConfusionMatrix(len(CLASSES)).update(pred, target)
    pole = CLASSES.index("pole")
    return {"test_miou": round(cm.miou(), 5), "test_iou": [round(float(v), 5) for v in cm.iou()],
            "test_bf2": round(boundary_f1(pred, target, 2), 5),
            "test_bf2_davis_per_image": round(boundary_f1(pred, target, 2, rule="davis", average="image"), 5),
            "test_pole_bf2": round(float(boundary_f1(pred, target, 2, num_classes=len(CLASSES))[pole]), 5)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fcn8s", choices=list(ZOO_MODELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--out", type=Path, default=ROOT / "data" / "seed_variance" / "fcn8s.json")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the zoo was trained with 2)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model option changed from the zoo's (repeatable)")
    p.add_argument("--seed0-checkpoint", type=Path, help="score this checkpoint as seed 0 instead of training it")
    args = p.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        p.error("--seeds must be distinct integers >= 0")
    try:
        changes = parse_model_options(args.set)
        options = {"width": RECIPE.width, **ZOO_MODELS[args.model], **changes}
        build_model(args.model, len(CLASSES), **options)      # a bad option fails now, not after training
    except (ValueError, TypeError) as e:
        p.error(str(e))
    torch.set_num_threads(args.threads)
    argv_list = sys.argv[1:] if argv is None else list(argv)
    result = {
        "command": " ".join(["python tools/seed_variance.py"] + [shlex.quote(a) for a in argv_list]),
        "what": f"{args.model} trained with the zoo recipe, only the seed changed; scored on notebook 08's test set",
        "model": args.model,
        "options": options,
        "recipe": dataclasses.asdict(RECIPE),
        "test_set": TEST,
        "classes": list(CLASSES),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="seed_variance_") as tmp:
        for seed in args.seeds:
            recipe = dataclasses.replace(RECIPE, seed=seed)
            if seed == 0 and args.seed0_checkpoint is not None:
                run = {"seed": seed, **scored_checkpoint(args.seed0_checkpoint, args.model, options)}
            else:
                t0 = time.perf_counter()
                entry = train_zoo_model(args.model, tmp, recipe, device="cpu", progress=False, options=options)
                model = load_model(Path(tmp) / entry["file"], map_location="cpu").eval()
                run = {"seed": seed, **test_scores(model), "val_miou": entry["val_miou"], "steps": entry["steps"],
                       "train_time_s": round(time.perf_counter() - t0, 1)}
            result["runs"].append(run)
            write_json_atomic(args.out, result)
            how = f"{run['train_time_s']:.0f} s" if "train_time_s" in run else f"scored {run['checkpoint']}"
            print(f"seed {seed}: test mIoU {run['test_miou']:.4f}, validation mIoU {run['val_miou']:.4f}, "
                  f"boundary F at 2 px {run['test_bf2']:.4f}, {how}", flush=True)
    return 0


def scored_checkpoint(path: Path, name: str, options: dict) -> dict:
    """Test scores of a stored checkpoint, built with ``options`` (strict load) and its stored validation mIoU."""
    state = load_checkpoint(path, map_location="cpu")
    model = build_model(name, len(CLASSES), **options)
    model.load_state_dict(state["model"], strict=True)
    return {**test_scores(model.eval()), "val_miou": round(float(state["val_miou"]), 4), "checkpoint": path.name}


if __name__ == "__main__":
    sys.exit(main())
