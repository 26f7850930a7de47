"""The course's model zoo: FCN-8s, PSPNet, DeepLabV3+ and Gated-SCNN trained on SynthCity.

Notebook 08 compares the four models. Training them takes most of an hour on a laptop
CPU (the benchmark results give the measured times), too long for a lecture, so the
course trains them once with one recipe and commits the weights under ``data/zoo/`` with
a manifest (``data/zoo/manifest.json``): the command, the recipe, and per model its
options, SHA-256, size, training time and validation mIoU. Reproduce them with::

    python -m course_utils.cli.zoo --out data/zoo

(``--models gscnn`` retrains one; ``--device cuda`` uses a GPU). The recipe is the same
for every model, so the comparison is of architectures, not of tuning effort: the same
pre-trained encoder (``data/encoder_synthcity.pt``), scenes, augmentation, epochs, batch
size, AdamW with the poly schedule, and seed. Each model trains with its own loss
(``model.criterion()``): Gated-SCNN's adds a class-balanced edge BCE and the dual-task
term to the cross-entropy the others use. The weights of the *last* epoch are kept, not the best validated ones:
picking by validation mIoU would select on the data the notebook then reports.

The results are bit-reproducible on the same CPU with the same thread count; another CPU
or thread count sums in another order and ends a few thousandths of mIoU away. The hashes
protect the committed files either way: :func:`load_zoo_model` refuses a file whose
SHA-256 differs from the manifest before unpickling anything.
"""
from __future__ import annotations

import dataclasses
import shlex
import time
from pathlib import Path

import torch

from ._checks import check_choice
from .labels import IGNORE_INDEX
from .paths import DATA_DIR

__all__ = ["ZOO_DIR", "ZOO_MODELS", "LABEL", "RECIPE", "train_zoo_model", "read_zoo_manifest", "load_zoo_model",
           "load_zoo"]

ZOO_DIR = DATA_DIR / "zoo"
MANIFEST = "manifest.json"

# Output strides as in the papers: PSPNet at 8 (Zhao et al., CVPR 2017), DeepLabV3+ at 16
# for training (Chen et al., ECCV 2018), Gated-SCNN on the DeepLabV3+ stream at 16.
ZOO_MODELS = {
    "fcn8s": {},
    "pspnet": {"output_stride": 8},
    "deeplabv3plus": {"output_stride": 16},
    # Every option that shapes the model or its loss is written out, so the manifest and
    # the checkpoint say how it was built whatever the builder's defaults become.
    "gscnn": {"output_stride": 16, "shape_level": "c1", "edge_pool": "aligned", "edge_output": "shape",
              "dual_boundary": "paper"},
}
# How tables and plots name them.
LABEL = {"fcn8s": "FCN-8s", "pspnet": "PSPNet", "deeplabv3plus": "DeepLabV3+", "gscnn": "GSCNN"}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training recipe for every model of the zoo (SynthCity scenes, AdamW, poly)."""
    size: int = 128
    n_train: int = 1500
    n_val: int = 200
    train_seed: int = 0
    val_seed: int = 1
    epochs: int = 24
    batch_size: int = 8
    lr: float = 5e-3
    weight_decay: float = 1e-4
    width: int = 16
    seed: int = 0
    pretrained_encoder: bool = True


RECIPE = Recipe()


def train_zoo_model(name: str, out_dir=ZOO_DIR, recipe: Recipe = RECIPE, device=None, progress: bool = True,
                    max_steps: int | None = None, options: dict | None = None) -> dict:
    """Train zoo model ``name`` with ``recipe``; write ``out_dir/NAME.pt``; return its manifest entry.

    ``options`` replaces the zoo's model options (``{"width": recipe.width, **ZOO_MODELS[name]}``),
    for studies of a variant trained with the same recipe."""
    from .datasets import CLASSES, SynthCity
    from .models import build_model
    from .pretrain import load_encoder
    from .training import StopAt, criterion_for, evaluate, fit, make_loader, save_checkpoint, select_device

    check_choice("name", name, tuple(ZOO_MODELS))
    device = select_device(device)
    out = Path(out_dir) / f"{name}.pt"
    train_set = SynthCity(recipe.n_train, recipe.size, seed=recipe.train_seed, augment=True)
    val_set = SynthCity(recipe.n_val, recipe.size, seed=recipe.val_seed)
    torch.manual_seed(recipe.seed)
    options = dict(options) if options is not None else {"width": recipe.width, **ZOO_MODELS[name]}
    model = build_model(name, len(CLASSES), **options)
    if recipe.pretrained_encoder:
        load_encoder(model)
    train_loader = make_loader(train_set, recipe.batch_size, shuffle=True, device=device, seed=recipe.seed)
    val_loader = make_loader(val_set, 32, device=device)
    callbacks = [] if max_steps is None else [StopAt(max_steps)]
    t0 = time.perf_counter()
    history = fit(model, train_loader, val_loader, epochs=recipe.epochs, lr=recipe.lr,
                  weight_decay=recipe.weight_decay, device=device, val_every=recipe.epochs,
                  keep="last", progress=progress, callbacks=callbacks)
    train_time = time.perf_counter() - t0
    model.to("cpu")
    cm = evaluate(model, make_loader(val_set, 32, device="cpu"), len(CLASSES), device="cpu")
    sha = save_checkpoint(out, model=model, recipe=dataclasses.asdict(recipe), val_miou=cm.miou())
    return {"file": out.name, "sha256": sha, "bytes": out.stat().st_size, "options": options,
            "parameters": sum(p.numel() for p in model.parameters()), "steps": history.steps,
            "loss": repr(criterion_for(model, IGNORE_INDEX)),
            "val_miou": round(cm.miou(), 4), "train_time_s": round(train_time, 1),
            "images_per_s": round(history.images_per_s, 1), "device": str(device)}


def read_zoo_manifest(zoo_dir=ZOO_DIR) -> dict:
    """The zoo's manifest; a clear error if the zoo has not been trained into ``zoo_dir``."""
    import json

    path = Path(zoo_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no zoo manifest {str(path)!r}; create it with: "
                                f"python -m course_utils.cli.zoo --out {shlex.quote(str(zoo_dir))}")
    info = json.loads(path.read_text())
    if not isinstance(info, dict) or not isinstance(info.get("models"), dict):
        raise ValueError(f"zoo manifest {str(path)!r} has no 'models' table")
    return info


def load_zoo_model(name: str, zoo_dir=ZOO_DIR, device="cpu"):
    """Zoo model ``name`` in eval mode, after checking its file's SHA-256 against the manifest."""
    from .training import load_model

    info = read_zoo_manifest(zoo_dir)
    if name not in info["models"]:
        raise ValueError(f"name must be one of {', '.join(map(repr, info['models']))} (the models in "
                         f"{str(Path(zoo_dir) / MANIFEST)!r}); got {name!r}")
    entry = info["models"][name]
    model = load_model(Path(zoo_dir) / entry["file"], expected_sha256=entry["sha256"], map_location=device)
    return model.to(device).eval()


def load_zoo(zoo_dir=ZOO_DIR, device="cpu") -> dict:
    """All zoo models, ``{name: model}`` in the manifest's order, hash-checked, in eval mode."""
    return {name: load_zoo_model(name, zoo_dir, device) for name in read_zoo_manifest(zoo_dir)["models"]}



if __name__ == "__main__":
    # The library does not import its command line; say where it is.
    raise SystemExit("usage: python -m course_utils.cli.zoo (this module is the library)")
