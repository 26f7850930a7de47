"""``python -m course_utils.cli.zoo``: retrain the course's model zoo (see :mod:`course_utils.zoo`)."""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

import torch

from .._checks import check_int
from ..atomic import write_json_atomic
from ..zoo import MANIFEST, ZOO_MODELS, Recipe, read_zoo_manifest, train_zoo_model

__all__ = ["main"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_utils.cli.zoo", description=_DESCRIPTION)
    p.add_argument("--out", default=str(Path("data") / "zoo"), help="folder for the checkpoints and manifest")
    p.add_argument("--models", nargs="+", default=list(ZOO_MODELS), choices=list(ZOO_MODELS),
                   help="which models to (re)train; the others keep their manifest entries")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    for field in dataclasses.fields(Recipe):
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=field.default,
                           metavar="BOOL", help="recipe (default %(default)s)")
        else:
            p.add_argument(flag, type=float if field.type in ("float", float) else int, default=field.default,
                           help="recipe (default %(default)s)")
    p.add_argument("--max-steps", type=int, default=None, help="stop each model after this many steps (tests)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(check_int("--threads", args.threads, 1))
    recipe = Recipe(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)})
    out = Path(args.out)
    try:
        info = read_zoo_manifest(out)
    except FileNotFoundError:
        info = {"models": {}}
    if info.get("recipe") not in (None, dataclasses.asdict(recipe)):
        keep = [m for m in info["models"] if m not in args.models]
        if keep:
            print(f"the recipe differs from the manifest's: retraining {', '.join(keep)} as well")
            args.models = list(dict.fromkeys(args.models + keep))
        info["models"] = {}
    argv_list = sys.argv[1:] if argv is None else list(argv)
    info.update(command=" ".join(["python -m course_utils.cli.zoo"] + [shlex.quote(a) for a in argv_list]),
                recipe=dataclasses.asdict(recipe), torch_version=torch.__version__,
                threads=torch.get_num_threads())
    for name in args.models:
        print(f"training {name} ...", flush=True)
        entry = train_zoo_model(name, out, recipe, args.device, progress=not args.quiet, max_steps=args.max_steps)
        info["models"][name] = entry
        # Keep the zoo's order and write after each model, so a long run can be stopped.
        info["models"] = {m: info["models"][m] for m in ZOO_MODELS if m in info["models"]}
        write_json_atomic(out / MANIFEST, info)
        print(f"{name}: validation mIoU {entry['val_miou']:.4f}, {entry['train_time_s']:.0f} s, "
              f"{entry['bytes'] / 1e6:.1f} MB", flush=True)
    return 0


_DESCRIPTION = "The course's model zoo: FCN-8s, PSPNet, DeepLabV3+ and Gated-SCNN trained on SynthCity."

if __name__ == "__main__":
    sys.exit(main())
