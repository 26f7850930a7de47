"""Evaluate a checkpoint from the command line: per-class IoU, mIoU, pixel accuracy.

::

    python -m course_utils.evaluate --checkpoint runs/fcn/best.pt --data synthcity
    python -m course_utils.evaluate --checkpoint runs/voc/best.pt --data voc:~/data/VOCdevkit --json
    torchrun --standalone --nproc_per_node=4 -m course_utils.evaluate --checkpoint ... --data ...

The checkpoint must record its model (``model_config``, which
:func:`course_utils.training.save_checkpoint` stores), so the model is rebuilt with
:func:`course_utils.training.model_from_state`; its class count must match the data's. Under
``torchrun`` each process evaluates an exact shard of the data (no padding) and the
confusion matrices are summed, so the numbers equal one process's. ``--json`` prints one
JSON object instead of the table: ``classes``, ``iou``, ``miou``, ``pixel_accuracy``,
``class_accuracy``, ``confusion_matrix`` (rows: true class, columns: predicted), ``pixels``,
``checkpoint_sha256``, and ``boundary_f1`` with its summed ``boundary_counts`` (class-agnostic
boundary F-score at ``--boundary-tolerance`` pixels, see
:func:`course_utils.metrics.boundary_f1`; ``--boundary-tolerance -1`` skips it). NaN (a class
absent from both prediction and truth) is ``null``. Evaluation runs in fp32 unless ``--amp``
asks for the precision policy's mixed precision.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import torch

from . import common as cli_data
from .common import CLIError, check_model_config
from .distributed import init_distributed
from ..zoo import RECIPE

PROG = "python -m course_utils.evaluate"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a .pt file written by course_utils.train / fit")
    p.add_argument("--data", required=True, help=cli_data.SPEC_HELP)
    p.add_argument("--split", default="val", help="folder data sets: which split (default val)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="per-process batch (default 8 for SynthCity, 1 for folders: images differ in size)")
    p.add_argument("--size", type=int, default=RECIPE.size, help="SynthCity scene size (the one training used)")
    p.add_argument("--n-val", type=int, default=RECIPE.n_val, help="SynthCity validation scenes")
    p.add_argument("--seed", type=int, default=0, help="SynthCity seed (the one training used)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--boundary-tolerance", type=float, default=2.0, metavar="PX",
                   help="boundary F-score tolerance in pixels (negative: skip the boundary F-score)")
    p.add_argument("--amp", dest="amp", action="store_true", default=False,
                   help="evaluate in the precision policy's mixed precision (default: fp32, so that classes "
                        "whose scores nearly tie are not decided by bf16 rounding)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="evaluate in fp32 (the default)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    return p


def main(argv=None) -> int:
    return cli_data.run_main(_main, argv, PROG)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    from ..training import BoundaryMeter, ShardSampler, evaluate, load_checkpoint, make_loader, model_from_state
    from ..training import sha256_file, use_channels_last

    scheme, _ = cli_data.parse_data_spec(args.data)
    try:
        state = load_checkpoint(args.checkpoint)
    except FileNotFoundError:
        raise CLIError(f"--checkpoint {args.checkpoint!r} does not exist") from None
    except Exception as err:  # noqa: BLE001 - torch.load's errors are many and unhelpful
        raise CLIError(f"--checkpoint {args.checkpoint!r} is not a readable checkpoint "
                       f"({type(err).__name__})") from None
    config = state.get("model_config")
    split = args.split if scheme != "synthcity" else "val"
    dataset = cli_data.build_dataset(args.data, split, train=False, size=args.size, n=args.n_val, seed=args.seed)
    num_classes = cli_data.dataset_num_classes(dataset)
    check_model_config(config or {}, None, num_classes, args.checkpoint)
    model = model_from_state(state, args.checkpoint)

    rank, world, device = init_distributed()
    batch = args.batch_size or (8 if scheme == "synthcity" else 1)
    loader = make_loader(dataset, batch, device=device, num_workers=args.workers, drop_last=False,
                         sampler=ShardSampler(len(dataset), rank, world))
    tolerance = args.boundary_tolerance if args.boundary_tolerance >= 0 else None
    meters = [BoundaryMeter(tolerance)] if tolerance is not None else []
    channels_last = use_channels_last(None, device)     # as training lays it out on this device
    if channels_last:
        model = model.to(device, memory_format=torch.channels_last)
    cm = evaluate(model, loader, num_classes, device, amp=None if args.amp else False,
                  channels_last=channels_last, meters=meters)
    boundary = meters[0].result() if meters else None
    if rank != 0:
        return 0
    names = cli_data.class_names(dataset)
    if args.json:
        result = {"checkpoint": str(args.checkpoint), "checkpoint_sha256": sha256_file(args.checkpoint),
                  "data": args.data, "split": split, "model": config["name"], "classes": names,
                  "iou": _plain(cm.iou()), "miou": _plain(cm.miou()),
                  "pixel_accuracy": _plain(cm.pixel_accuracy()), "class_accuracy": _plain(cm.class_accuracy()),
                  "confusion_matrix": cm.matrix.tolist(), "pixels": cm.total, "processes": world,
                  "boundary_f1": boundary, "boundary_tolerance_px": tolerance,
                  "boundary_counts": meters[0].counts.tolist() if meters else None}
        print(json.dumps(result))
    else:
        print(f"{config['name']} on {args.data} ({split}, {len(dataset)} images, {cm.total} pixels)")
        print(cm.table(names))
        line = f"mIoU {_pct(cm.miou())}   pixel accuracy {_pct(cm.pixel_accuracy())}"
        if boundary is not None:
            line += f"   boundary F ({tolerance:g} px) {_pct(boundary)}"
        print(line)
    return 0


def _plain(values):
    if isinstance(values, float):
        return None if math.isnan(values) else values
    return [None if math.isnan(float(v)) else float(v) for v in values]


def _pct(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:.2f} %"


if __name__ == "__main__":
    sys.exit(main())

