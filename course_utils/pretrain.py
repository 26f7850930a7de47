"""The course's own "ImageNet": pre-train the backbone encoder on SynthCity crops.

The pre-2018 recipe (lecture slide *Early Training Methods*) starts a segmentation
network from an encoder trained for *classification*. Downloading VGG or ResNet weights
is not an option here, so the course makes its own: small square crops are cut from
SynthCity scenes and labelled by the class of their centre pixel, and a
:class:`~course_utils.models.ResNetBackbone` followed by global average pooling and one
linear layer learns to name that class. Crop centres are drawn class-balanced (first a
class present in the scene, then a pixel of it), so thin poles and far signs are seen as
often as sky.

Reproduce the committed checkpoint with::

    python -m course_utils.cli.pretrain --out data/encoder_synthcity.pt --seed 0

It writes the checkpoint atomically (:func:`course_utils.training.save_checkpoint`) and a
manifest ``data/encoder_synthcity.json`` with the command, seed, sha256, held-out
accuracy, backbone options and torch version. :func:`load_encoder` checks that hash
before ``torch.load(weights_only=True)`` reads the file.
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .atomic import write_json_atomic
from .paths import DATA_DIR
from ._checks import check_choice, check_int
from .datasets import NUM_CLASSES, generate
from .models import ResNetBackbone
from .training import load_checkpoint, save_checkpoint

__all__ = ["DEFAULT_CHECKPOINT", "DEFAULT_OPTIONS", "EncoderClassifier", "make_crops", "pretrain",
           "read_manifest", "load_encoder", "load_classifier"]

DEFAULT_CHECKPOINT = DATA_DIR / "encoder_synthcity.pt"
# The backbone the notebooks' FCNs use (width 16: 0.3 M parameters, 1.2 MB as float32).
DEFAULT_OPTIONS = {"width": 16, "depths": [1, 1, 1, 1], "norm": "batch"}
TASK = "centre-pixel class of class-balanced square crops of SynthCity scenes"


class EncoderClassifier(nn.Module):
    """``backbone`` -> global average pool of its stride-32 features -> linear scores."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 16, depths=(1, 1, 1, 1),
                 norm: str = "batch"):
        super().__init__()
        self.backbone = ResNetBackbone(width, depths, norm)
        self.fc = nn.Linear(self.backbone.channels["c5"], check_int("num_classes", num_classes, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x)["c5"].mean(dim=(2, 3)))


def make_crops(n_scenes: int, scene_size: int = 96, crop: int = 48, per_scene: int = 16,
               seed: int = 0):
    """Class-balanced crops: ``(images float32 (M, 3, crop, crop), labels int64 (M,))``.

    ``M = n_scenes * per_scene``. The label is the class of the crop's centre pixel
    (index ``crop // 2``). Scenes are padded by reflection so a centre may lie anywhere.
    """
    n_scenes = check_int("n_scenes", n_scenes, 1)
    scene_size = check_int("scene_size", scene_size, 8)
    crop = check_int("crop", crop, 4, scene_size)
    per_scene = check_int("per_scene", per_scene, 1)
    seed = check_int("seed", seed, 0)
    images, labels = generate(n_scenes, scene_size, seed)
    rng = np.random.default_rng([seed, 7])
    half = crop // 2
    padded = np.pad(images, ((0, 0), (0, 0), (half, crop - half), (half, crop - half)), mode="reflect")
    out_x = np.empty((n_scenes * per_scene, 3, crop, crop), dtype=np.float32)
    out_y = np.empty(n_scenes * per_scene, dtype=np.int64)
    k = 0
    for i in range(n_scenes):
        flat = labels[i].ravel()
        present = np.unique(flat)
        for cls in rng.choice(present, size=per_scene):
            r, c = divmod(int(rng.choice(np.flatnonzero(flat == cls))), scene_size)
            # Centre pixel (r, c) of the scene sits at (r + half, c + half) in the padded copy.
            out_x[k] = padded[i, :, r:r + crop, c:c + crop]
            out_y[k] = cls
            k += 1
    return torch.from_numpy(out_x), torch.from_numpy(out_y)


@torch.no_grad()
def _accuracy(model, x, y, batch: int = 256):
    model.eval()
    pred = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    acc = float((pred == y).float().mean())
    per_class = [float((pred[y == c] == c).float().mean()) for c in range(NUM_CLASSES) if (y == c).any()]
    return acc, float(np.mean(per_class))


def pretrain(out=DEFAULT_CHECKPOINT, *, seed: int = 0, scenes: int = 1000, val_scenes: int = 100,
             scene_size: int = 96, crop: int = 48, per_scene: int = 16, epochs: int = 8,
             batch_size: int = 64, lr: float = 4e-3, width: int = 16, norm: str = "batch",
             manifest=None, command: str | None = None, max_steps: int | None = None,
             verbose: bool = True) -> dict:
    """Train an :class:`EncoderClassifier` on SynthCity crops and save its encoder.

    Training crops come from scenes of seed ``seed``, held-out crops from scenes of seed
    ``seed + 1_000_000`` (never seen in training). ``max_steps`` stops early (for tests).
    Writes ``out`` (``{"encoder": backbone state dict, "classifier": fc state dict,
    "backbone_options": ...}``) and the manifest JSON (default: ``out`` with suffix
    ``.json``); returns the manifest as a dict.
    """
    seed = check_int("seed", seed, 0, 2**31 - 1)
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 2)
    check_choice("norm", norm, ("batch", "group"))
    if max_steps is not None:
        max_steps = check_int("max_steps", max_steps, 1)
    out = Path(out)
    manifest = Path(manifest) if manifest is not None else out.with_suffix(".json")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    x_train, y_train = make_crops(scenes, scene_size, crop, per_scene, seed)
    x_val, y_val = make_crops(val_scenes, scene_size, crop, per_scene, seed + 1_000_000)
    options = {"width": width, "depths": [1, 1, 1, 1], "norm": norm}
    model = EncoderClassifier(NUM_CLASSES, width, options["depths"], norm)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = len(x_train) // batch_size
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        losses = []
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb = x_train[idx]
            # Random horizontal flips: a street seen in a mirror is still a street.
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb[flip] = xb[flip].flip(-1)
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            step += 1
        if verbose and losses:
            acc, bal = _accuracy(model, x_val, y_val)
            print(f"epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f}, held-out accuracy {acc:.3f} "
                  f"(balanced {bal:.3f})", flush=True)
        if step >= total:
            break
    train_acc, _ = _accuracy(model, x_train[:2000], y_train[:2000])
    val_acc, val_bal = _accuracy(model, x_val, y_val)
    sha = save_checkpoint(out, encoder=model.backbone.state_dict(), classifier=model.fc.state_dict(),
                          backbone_options=options, num_classes=NUM_CLASSES)
    info = {
        "checkpoint": out.name,
        "sha256": sha,
        "bytes": out.stat().st_size,
        "command": command or _default_command(out, seed),
        "seed": seed,
        "task": TASK,
        "data": {"train_scenes": scenes, "train_seed": seed, "heldout_scenes": val_scenes,
                 "heldout_seed": seed + 1_000_000, "scene_size": scene_size, "crop": crop,
                 "crops_per_scene": per_scene},
        "training": {"epochs": epochs, "steps": step, "batch_size": batch_size, "optimizer": "adamw",
                     "lr": lr, "schedule": "one-cycle", "augmentation": "horizontal flip"},
        "metrics": {"heldout_accuracy": round(val_acc, 4), "heldout_balanced_accuracy": round(val_bal, 4),
                    "train_accuracy": round(train_acc, 4), "chance_accuracy": round(1 / NUM_CLASSES, 4),
                    "heldout_crops": len(y_val)},
        "backbone": "course_utils.models.ResNetBackbone",
        "backbone_options": options,
        "torch_version": torch.__version__,
        "train_time_s": round(time.perf_counter() - t0, 1),
    }
    write_json_atomic(manifest, info)
    return info


def _default_command(out: Path, seed: int) -> str:
    return f"python -m course_utils.cli.pretrain --out {shlex.quote(str(out))} --seed {seed}"


def read_manifest(checkpoint=DEFAULT_CHECKPOINT, manifest=None) -> dict:
    """The manifest of ``checkpoint`` (default: the same path with suffix ``.json``)."""
    checkpoint = Path(checkpoint)
    manifest = Path(manifest) if manifest is not None else checkpoint.with_suffix(".json")
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {str(manifest)!r} of checkpoint {str(checkpoint)!r} does not exist; "
                                "run python -m course_utils.cli.pretrain to create both")
    info = json.loads(manifest.read_text())
    if not isinstance(info, dict) or "sha256" not in info:
        raise ValueError(f"manifest {str(manifest)!r} has no 'sha256' entry")
    return info


def load_encoder(model: nn.Module, checkpoint=DEFAULT_CHECKPOINT, manifest=None,
                 expected_sha256: str | None = None) -> dict:
    """Copy the pre-trained encoder into ``model`` (a segmentation model or a backbone).

    The checkpoint's SHA-256 must equal ``expected_sha256`` (default: the manifest's);
    otherwise ``ValueError`` names the file and nothing is unpickled. The backbone
    options of ``model`` must match the checkpoint's. Returns the manifest.
    """
    info = read_manifest(checkpoint, manifest)
    expected = expected_sha256 if expected_sha256 is not None else info["sha256"]
    state = load_checkpoint(checkpoint, expected_sha256=expected)
    backbone = model.backbone if hasattr(model, "backbone") else model
    if not isinstance(backbone, ResNetBackbone):
        raise ValueError(f"model must be a segmentation model with a ResNetBackbone (or the backbone itself), "
                         f"got {type(model).__name__}")
    opts = state["backbone_options"]
    mine = {"width": backbone.channels["c1"], "norm": backbone.norm}
    if mine["width"] != opts["width"] or mine["norm"] != opts["norm"]:
        raise ValueError(f"model's backbone has width={mine['width']}, norm={mine['norm']!r} but checkpoint "
                         f"{str(checkpoint)!r} holds width={opts['width']}, norm={opts['norm']!r}: "
                         f"build the model with width={opts['width']}, norm={opts['norm']!r}")
    backbone.load_state_dict(state["encoder"])
    return info


def load_classifier(checkpoint=DEFAULT_CHECKPOINT, manifest=None) -> EncoderClassifier:
    """The whole pre-trained crop classifier (encoder + linear layer), hash-checked, in eval mode."""
    info = read_manifest(checkpoint, manifest)
    state = load_checkpoint(checkpoint, expected_sha256=info["sha256"])
    opts = state["backbone_options"]
    model = EncoderClassifier(int(state["num_classes"]), opts["width"], opts["depths"], opts["norm"])
    model.backbone.load_state_dict(state["encoder"])
    model.fc.load_state_dict(state["classifier"])
    return model.eval()



if __name__ == "__main__":
    # The library does not import its command line; say where it is.
    raise SystemExit("usage: python -m course_utils.cli.pretrain (this module is the library)")
