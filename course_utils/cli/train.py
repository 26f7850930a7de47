"""Train a segmentation model from the command line, on one process or many (``torchrun``).

One process (CPU, one GPU, Apple MPS)::

    python -m course_utils.train --model fcn8s --data synthcity --out runs/fcn --epochs 20
    python -m course_utils.train --model fcn8s --data voc:~/data/VOCdevkit --out runs/voc \\
        --epochs 50 --batch-size 16 --crop 512 512 --lr 1e-3

Several GPUs on one machine, then several machines (the same command behind ``torchrun``)::

    torchrun --standalone --nproc_per_node=4 -m course_utils.train --model fcn8s ... --sync-bn
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:29500 -m course_utils.train ...

The defaults are the course's recipe (:data:`course_utils.zoo.RECIPE`, the one the
committed model zoo is trained with): 128-pixel SynthCity scenes (1500 to train, 200 to
validate), AdamW at a peak learning rate of 5e-3 annealed by the poly schedule, batch 8,
24 epochs, and the backbone started from the course's encoder pre-trained on SynthCity
crops (:func:`course_utils.pretrain.load_encoder`) whenever the model's backbone matches it.

It is a thin layer over :func:`course_utils.training.fit`: the same models
(:func:`~course_utils.models.build_model`), data sets, loop and metrics as the notebooks.
Under ``torchrun`` every process joins the process group (NCCL on CUDA, else gloo), wraps
the model in ``DistributedDataParallel`` and reads its share of each batch; ``fit``
all-reduces the validation confusion matrix, so the mIoU is the whole validation set's,
and only rank 0 prints and writes files.

``--batch-size`` is the *global* batch, split evenly over the processes, and the training
order is the ``DistributedSampler``'s (also with one process), so the same command with 1
or K processes takes the same optimisation steps: with GroupNorm (``--model-option
norm=group``), without dropout, and with the same seed, it ends with the same weights up
to float rounding. (BatchNorm normalises over each process's share of the batch unless
``--sync-bn``.)

Written to ``--out``: ``config.json`` (the arguments and the training configuration),
``metrics.csv`` (one row per epoch), ``curves.png``, ``latest.pt`` (the resumable state:
weights, optimizer, schedule, step, sampler position, random states) and ``best.pt`` (the
best validated weights), all written atomically. ``--resume`` continues from
``latest.pt`` exactly where it stopped. ``--max-steps`` stops early as if the job had been
killed there (the state is saved), which is how the tests check resuming.

Precision follows :func:`course_utils.precision.choose_precision` (bf16 on GPUs with native
bf16, fp16 with a gradient scaler on 7.x ones, fp32 elsewhere; ``--no-amp`` for fp32);
channels_last on CPU and CUDA; ``--compile`` trains a ``torch.compile``-d model. Each model
trains with its own loss (``model.criterion()``: cross-entropy, Gated-SCNN's adds its edge
and dual-task terms), recorded in ``config.json``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import sys
from pathlib import Path

import torch

from ..atomic import write_atomic
from . import common as cli_data
from .common import CLIError, check_model_config
from .distributed import init_distributed
from ..zoo import RECIPE

PROG = "python -m course_utils.train"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="a name from course_utils.models.available_models()")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of build_model, e.g. width=32 or norm=group (repeatable)")
    p.add_argument("--data", required=True, help=cli_data.SPEC_HELP)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs to train (default {RECIPE.epochs} without --time-budget, the course's recipe)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop after this much training time (the schedule anneals over it)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps, saving the state (simulates a killed job)")
    p.add_argument("--batch-size", type=int, default=RECIPE.batch_size,
                   help="global batch size, split over the processes")
    p.add_argument("--val-batch-size", type=int, default=None,
                   help="per-process evaluation batch (default: the training one for SynthCity, 1 for folders)")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="training crop (default: SynthCity's --size; 512 512 for VOC and Cityscapes)")
    p.add_argument("--size", type=int, default=RECIPE.size, help="SynthCity scene size")
    p.add_argument("--n-train", type=int, default=RECIPE.n_train, help="SynthCity training scenes")
    p.add_argument("--n-val", type=int, default=RECIPE.n_val, help="SynthCity validation scenes")
    p.add_argument("--no-augment", action="store_true", help="SynthCity: no flip/scale/crop augmentation")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--lr", type=float, default=None,
                   help=f"peak learning rate of the poly schedule (default {RECIPE.lr:g} for AdamW, the course's "
                        "recipe; 1e-2 for SGD)")
    p.add_argument("--weight-decay", type=float, default=RECIPE.weight_decay)
    p.add_argument("--pretrained-encoder", choices=("auto", "yes", "no"), default="auto",
                   help="start the backbone from the course's encoder pre-trained on SynthCity crops "
                        "(course_utils.pretrain.load_encoder); auto: when the model's backbone matches it "
                        "(width=16, norm=batch, the defaults)")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--checkpoint-every", type=int, default=None, help="also save the state every N steps")
    p.add_argument("--amp", dest="amp", action="store_true", default=None,
                   help="insist on mixed precision (an error where the device has no native bf16/fp16 path); "
                        "default: course_utils.precision.choose_precision decides (bf16 on CUDA >= 8.0, fp16 with "
                        "a gradient scaler on 7.x GPUs, fp32 on older GPUs, on CPUs without native bf16 and on MPS)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="train in fp32")
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=None,
                   help="NHWC memory layout (default: on for CPU and CUDA, off for MPS)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes")
    p.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms only, so --resume repeats an uninterrupted run exactly on CUDA "
                        "too (slower there; set CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting, as PyTorch's "
                        "reproducibility notes ask)")
    p.add_argument("--workers", type=cli_data.workers_arg, default="auto",
                   help="DataLoader worker processes per process; auto: min(8, the process's share of the CPU "
                        "cores) on CUDA, 0 on a CPU (the model needs every core there)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/latest.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    return cli_data.run_main(_main, argv, PROG)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    from ..models import available_models, build_model
    from ..training import (ShardSampler, StopAt, TrainConfig, criterion_for, fit, load_checkpoint, make_loader,
                            prepare_model)

    if args.model not in available_models():
        raise CLIError(f"--model must be one of {', '.join(available_models())}; got {args.model!r}")
    options = cli_data.parse_model_options(args.model_option)
    out = Path(args.out)
    latest, best = out / "latest.pt", out / "best.pt"
    if args.resume and not latest.is_file():
        raise CLIError(f"--resume: no checkpoint {str(latest)!r} to continue from (run without --resume first)")
    if args.max_steps is not None and args.max_steps < 1:
        raise CLIError(f"--max-steps must be an integer >= 1, got {args.max_steps}")
    epochs = args.epochs if args.epochs is not None or args.time_budget is not None else RECIPE.epochs
    lr = args.lr if args.lr is not None else (RECIPE.lr if args.optimizer == "adamw" else 1e-2)
    scheme, _ = cli_data.parse_data_spec(args.data)     # fails before any process group exists

    rank, world, device = init_distributed()
    per_rank_batch = cli_data.check_batch_split(args.batch_size, world)
    folder = scheme != "synthcity"
    crop = tuple(args.crop) if args.crop else ((512, 512) if folder else None)
    train_set = cli_data.build_dataset(args.data, "train", train=not args.no_augment, crop=crop,
                                       size=args.size, n=args.n_train, seed=args.seed)
    val_set = cli_data.build_dataset(args.data, "val", train=False, size=args.size, n=args.n_val,
                                     seed=args.seed)
    num_classes = cli_data.dataset_num_classes(train_set)

    if args.resume:
        saved = load_checkpoint(latest).get("model_config") or {}
        check_model_config(saved, args.model, num_classes, str(latest))

    # Every process draws the same initial weights (DDP also broadcasts rank 0's).
    torch.manual_seed(args.seed)
    model = build_model(args.model, num_classes, **options)
    encoder = None if args.resume else start_from_encoder(model, args.pretrained_encoder)
    if args.sync_bn and device.type != "cuda":
        raise CLIError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only")
    # The layout before the DDP wrapper, which then hooks the parameters as they will stay,
    # and compilation around it (prepare_model's order).
    model = prepare_model(model, device, channels_last=args.channels_last, compile=args.compile, ddp=world > 1,
                          sync_bn=args.sync_bn and world > 1)

    # The DistributedSampler also with one process: its order (a permutation seeded by
    # seed + epoch, dealt round-robin to the ranks) is then the same for any world size.
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                                  seed=args.seed, drop_last=True)
    workers = cli_data.resolve_workers(args.workers, device)
    # On CUDA, make_loader ships SynthCity's 8-bit batches and augments them on the GPU.
    train_loader = make_loader(train_set, per_rank_batch, sampler=sampler, device=device,
                               num_workers=workers, seed=args.seed)
    if len(train_loader) == 0:
        raise CLIError(f"the training set has {len(train_set)} samples, fewer than one global batch "
                       f"({args.batch_size}): lower --batch-size")
    val_batch = args.val_batch_size or (1 if folder else per_rank_batch)
    val_loader = make_loader(val_set, val_batch, device=device, num_workers=workers, drop_last=False,
                             sampler=ShardSampler(len(val_set), rank, world))
    if device.type == "cuda" and not folder:
        # SynthCity's batches all have one shape, so cuDNN's per-shape search for the fastest
        # convolution pays once (folder images come in many sizes: it would search for each).
        torch.backends.cudnn.benchmark = True

    config = TrainConfig(epochs=epochs, time_budget_s=args.time_budget, optimizer=args.optimizer, lr=lr,
                         weight_decay=args.weight_decay, amp=args.amp, channels_last=args.channels_last,
                         compile=args.compile, deterministic=args.deterministic,
                         val_every=args.val_every, checkpoint=str(latest), best_checkpoint=str(best),
                         checkpoint_every=args.checkpoint_every, resume=bool(args.resume), keep="last",
                         progress=not args.quiet and rank == 0)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        info = {"args": vars(args), "world_size": world, "per_process_batch": per_rank_batch,
                "device": str(device), "num_classes": num_classes, "train_size": len(train_set),
                "val_size": len(val_set), "model_options": options, "pretrained_encoder": encoder,
                "loss": repr(criterion_for(model, config.ignore_index)),
                "train_config": dataclasses.asdict(config)}
        write_atomic(out / "config.json", json.dumps(info, indent=2, default=str) + "\n")

    callbacks = [MetricsWriter(out) if rank == 0 else (lambda trainer, event: None)]
    if args.max_steps is not None:
        callbacks.append(StopAt(args.max_steps))
    history = fit(model, train_loader, val_loader, config=config, callbacks=callbacks, device=device,
                  num_classes=num_classes)
    if rank == 0:
        write_metrics(out, history, len(train_loader))
        plot_curves(out / "curves.png", history)
        last = f"val mIoU {history.val_miou[-1]:.4f}" if history.val_miou else "no validation"
        print(f"stopped by {history.stopped_by} after {history.steps} steps, {history.epochs} epochs: {last}; "
              f"best {history.best_miou:.4f} at step {history.best_step}; "
              f"{history.images_per_s:.1f} images/s per process; wrote {out}")
    return 130 if history.stopped_by == "interrupt" else 0


def start_from_encoder(model, choice: str):
    """Load the course's pre-trained encoder into ``model`` (``choice`` "auto", "yes" or "no");
    returns the encoder file's name, or None when the model starts from random weights."""
    from ..pretrain import DEFAULT_CHECKPOINT, load_encoder

    if choice == "no":
        return None
    try:
        load_encoder(model)
    except (ValueError, RuntimeError) as err:     # RuntimeError: other backbone depths
        if choice == "yes":
            raise CLIError(f"--pretrained-encoder yes: {err}") from None
        return None     # another backbone (width, norm): it starts from random weights
    return DEFAULT_CHECKPOINT.name


class MetricsWriter:
    """Rewrites ``metrics.csv`` after every epoch, so a killed job leaves its log behind."""

    def __init__(self, out: Path):
        self.out = out

    def __call__(self, trainer, event):
        if event in ("epoch", "end"):
            write_metrics(self.out, trainer.history, trainer.steps_per_epoch)


METRIC_COLUMNS = ("epoch", "step", "train_loss", "lr", "val_miou", "val_pixel_accuracy")


def metric_rows(history, steps_per_epoch: int) -> list:
    """One row per finished epoch (from the history, so a resumed run's log is complete)."""
    rows, spe = [], steps_per_epoch
    val_at = dict(zip(history.val_step, zip(history.val_miou, history.val_pixel_accuracy)))
    for e, loss in enumerate(history.epoch_loss):
        step = (e + 1) * spe if spe else None
        miou, acc = val_at.get(step, (math.nan, math.nan))
        lr = history.step_lr[step - 1] if step and step <= len(history.step_lr) else math.nan
        rows.append({"epoch": e + 1, "step": step, "train_loss": loss, "lr": lr, "val_miou": miou,
                     "val_pixel_accuracy": acc})
    return rows


def write_metrics(out: Path, history, steps_per_epoch: int) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(metric_rows(history, steps_per_epoch))
    write_atomic(out / "metrics.csv", buf.getvalue())


def plot_curves(path: Path, history) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(range(1, len(history.step_loss) + 1), history.step_loss, lw=0.8)
    ax1.set(xlabel="step", ylabel="training loss", yscale="log" if history.step_loss else "linear")
    if history.val_step:
        ax2.plot(history.val_step, history.val_miou, "o-", label="mIoU")
        ax2.plot(history.val_step, history.val_pixel_accuracy, "s--", label="pixel accuracy")
        ax2.legend()
    ax2.set(xlabel="step", ylabel="validation", ylim=(0, 1))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getvalue())


if __name__ == "__main__":
    sys.exit(main())
