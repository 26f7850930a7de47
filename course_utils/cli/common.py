"""What the command-line tools share: data specs, model options, error reporting.

A data spec names a data set in one word, so the same command works on a laptop and a
GPU box: ``synthcity`` (drawn on the fly, no download), ``voc:PATH`` (Pascal VOC 2012,
the ``VOC2012`` folder or the ``VOCdevkit`` above it) or ``cityscapes:PATH`` (the folder
holding ``leftImg8bit/`` and ``gtFine/``).

Joining a ``torchrun`` process group is :mod:`course_utils.cli.distributed`'s job.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

from .._checks import check_int
from .distributed import shutdown_distributed

SCHEMES = ("synthcity", "voc", "cityscapes")
SPEC_HELP = "synthcity | voc:PATH | cityscapes:PATH"


class CLIError(Exception):
    """A mistake in the command line or its inputs: reported as one line, no traceback."""


def parse_data_spec(spec: str) -> tuple[str, Path | None]:
    """``"voc:/data/VOC"`` -> ``("voc", Path("/data/VOC"))``; ``"synthcity"`` -> ``("synthcity", None)``."""
    scheme, sep, path = str(spec).partition(":")
    if scheme not in SCHEMES:
        raise ValueError(f"data must be {SPEC_HELP}; got {spec!r} (unknown scheme {scheme!r})")
    if scheme == "synthcity":
        if path:
            raise ValueError(f"data 'synthcity' takes no path (size it with --size/--n-train); got {spec!r}")
        return scheme, None
    if not path:
        raise ValueError(f"data {scheme!r} needs a folder: {scheme}:PATH")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"data folder {str(root)!r} for {scheme!r} does not exist")
    return scheme, root


def build_dataset(spec: str, split: str, *, train: bool, crop=None, size=64, n: int = 256, seed: int = 0):
    """The data set a spec names, for training (augmented, ``crop``-sized) or evaluation.

    SynthCity's training and validation scenes come from different seeds, so they never
    overlap. Folder data sets are read as they are for evaluation (any image size, so
    evaluate with batch size 1) and flipped, rescaled and cropped for training.
    """
    from ..datasets import CityscapesSegmentation, FlipScaleCrop, SynthCity, VOCSegmentation

    scheme, root = parse_data_spec(spec)
    if scheme == "synthcity":
        # Offset seeds: the validation scenes are not a shuffled copy of the training ones.
        return SynthCity(n, size=size, seed=seed + (0 if split == "train" else 10_000), augment=train,
                         crop=crop)
    transform = FlipScaleCrop(scale_range=(0.5, 2.0), crop=crop) if train else None
    cls = VOCSegmentation if scheme == "voc" else CityscapesSegmentation
    return cls(root, split=split, transform=transform)


def class_names(dataset) -> list:
    names = getattr(dataset, "classes", None)
    return list(names) if names else [str(i) for i in range(dataset_num_classes(dataset))]


def dataset_num_classes(dataset) -> int:
    n = getattr(dataset, "num_classes", None)
    if not n:
        raise ValueError(f"{type(dataset).__name__} does not say how many classes it has (num_classes)")
    return int(n)


def parse_model_options(items) -> dict:
    """``["width=8", "norm='group'"]`` -> ``{"width": 8, "norm": "group"}`` (Python literals; bare words
    are strings, except ``true``/``false``, read as booleans as a shell user writes them)."""
    options = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-option must be KEY=VALUE, got {item!r}")
        if text in ("true", "false"):
            options[key] = text == "true"
            continue
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return options


def run_main(body, argv, prog: str) -> int:
    """Run ``body(argv)``; a bad input becomes one ``prog: error: ...`` line and exit code 2."""
    completed = False
    try:
        code = body(argv) or 0
        completed = True
        return code
    except (CLIError, ValueError, FileNotFoundError) as err:
        # Our own messages are one line; a data set's "missing files" message adds the
        # expected folder layout below it, which is worth the extra lines.
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    finally:
        shutdown_distributed(wait_for_all=completed)


MAX_AUTO_WORKERS = 8


def workers_arg(text: str):
    """argparse type of ``--workers``: ``"auto"`` or an integer >= 0."""
    if text == "auto":
        return text
    try:
        return check_int("--workers", int(text), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 0, got {text!r}") from None


def resolve_workers(workers, device) -> int:
    """``--workers auto``: on CUDA, ``min(8, this process's share of the CPU cores)`` worker
    processes, so the next batches are read while the GPU trains; on a CPU (or MPS) none:
    there the model needs every core, and a worker would take one from it."""
    if workers != "auto":
        return check_int("--workers", workers, 0)
    if getattr(device, "type", str(device)) != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))     # torchrun sets it
    return max(1, min(MAX_AUTO_WORKERS, cores // local_processes))


def check_batch_split(batch_size: int, world: int) -> int:
    """Per-process batch size: the global ``batch_size`` shared evenly by ``world`` processes."""
    batch_size = check_int("batch_size", batch_size, 1)
    if batch_size % world:
        raise ValueError(f"--batch-size is the global batch and must be a multiple of the number of "
                         f"processes ({world}), got {batch_size}")
    return batch_size // world


def check_model_config(saved: dict, model: str | None, num_classes: int, where: str) -> None:
    """Refuse a checkpoint of another model or class count (one line, naming both)."""
    if not saved:
        raise CLIError(f"checkpoint {where!r} does not record its model (no model_config)")
    if model is not None and saved.get("name") != model:
        raise CLIError(f"checkpoint {where!r} holds model {saved.get('name')!r}, not --model {model!r}")
    if saved.get("num_classes") != num_classes:
        raise CLIError(f"checkpoint {where!r} predicts {saved.get('num_classes')} classes but the data has "
                       f"{num_classes}")
