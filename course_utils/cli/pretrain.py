"""``python -m course_utils.cli.pretrain``: retrain the course's encoder (see :mod:`course_utils.pretrain`)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from ..pretrain import pretrain

__all__ = ["main"]

_DESCRIPTION = 'The course\'s own "ImageNet": pre-train the backbone encoder on SynthCity crops.'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_utils.cli.pretrain", description=_DESCRIPTION)
    p.add_argument("--out", default=str(Path("data") / "encoder_synthcity.pt"), help="checkpoint path")
    p.add_argument("--manifest", default=None, help="manifest path (default: OUT with suffix .json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenes", type=int, default=1000, help="training scenes")
    p.add_argument("--val-scenes", type=int, default=100, help="held-out scenes")
    p.add_argument("--scene-size", type=int, default=96)
    p.add_argument("--crop", type=int, default=48)
    p.add_argument("--per-scene", type=int, default=16, help="crops per scene")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--norm", default="batch", choices=("batch", "group"))
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke tests)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    argv_list = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m course_utils.cli.pretrain"] + [shlex.quote(a) for a in argv_list])
    info = pretrain(args.out, seed=args.seed, scenes=args.scenes, val_scenes=args.val_scenes,
                    scene_size=args.scene_size, crop=args.crop, per_scene=args.per_scene,
                    epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, width=args.width,
                    norm=args.norm, manifest=args.manifest, command=command, max_steps=args.max_steps)
    m = info["metrics"]
    print(f"wrote {args.out} (sha256 {info['sha256'][:12]}..., {info['bytes']} bytes): held-out accuracy "
          f"{m['heldout_accuracy']:.3f}, balanced {m['heldout_balanced_accuracy']:.3f} "
          f"(chance {m['chance_accuracy']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
