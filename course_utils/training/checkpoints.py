"""Checkpoints: atomic, hashed writes (:func:`save_checkpoint`), hash-checked
``weights_only`` reads (:func:`load_checkpoint`: no code runs when a file is loaded), and
the one way to rebuild a model from a checkpoint (:func:`model_from_state`, :func:`load_model`)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_open
from .distributed import unwrap_model

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "load_model", "model_from_state",
           "sha256_file"]

CHECKPOINT_FORMAT = "course_utils.checkpoint/1"


def save_checkpoint(path, model=None, **contents) -> str:
    """Write a checkpoint atomically; returns its SHA-256 (hex).

    ``model`` (a module, its state dict saved as ``"model"`` with its ``build_config`` as
    ``"model_config"``) and any other ``contents``; objects with a ``state_dict()``
    (optimizers, schedulers, scalers) are stored as their state dicts. The bytes go to a
    temporary file in the same directory, are flushed to disk (fsync), and then replace
    ``path`` in one ``os.replace``: a crash leaves either the old file or the new one,
    never half of one.
    """
    path = Path(path)
    payload = {}
    if model is not None:
        if isinstance(model, nn.Module):
            raw = unwrap_model(model)
            payload["model"] = raw.state_dict()
            payload["model_config"] = getattr(raw, "build_config", None)
        else:
            payload["model"] = model
    for key, value in contents.items():
        payload[key] = value.state_dict() if hasattr(value, "state_dict") and not isinstance(value, dict) else value
    digest = hashlib.sha256()
    with atomic_open(path, "wb") as f:
        torch.save(payload, _HashingWriter(f, digest))
    return digest.hexdigest()


class _HashingWriter:
    """A write-only file wrapper that hashes the bytes as ``torch.save`` writes them."""

    def __init__(self, f, digest):
        self._f, self._digest = f, digest

    def write(self, data) -> int:
        self._digest.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(path, expected_sha256: str | None = None, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    With ``expected_sha256`` the file's hash is checked first and a mismatch raises
    ``ValueError`` naming the file: a corrupted or substituted file is never unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if expected_sha256 is not None:
        expected = str(expected_sha256).strip().lower()
        actual = sha256_file(path)
        if actual != expected:
            raise ValueError(f"checkpoint {str(path)!r} has sha256 {actual}, expected {expected}: "
                             "the file is corrupted or not the one the manifest describes")
    return torch.load(path, map_location=map_location, weights_only=True)


def model_from_state(state: dict, where: str = "the checkpoint") -> nn.Module:
    """The model a loaded checkpoint holds: ``build_model`` from its ``model_config``, then its weights."""
    from ..models import build_model

    config = state.get("model_config")
    if not config:
        raise ValueError(f"checkpoint {where!r} does not say which model it holds (no 'model_config'); "
                         "build the model yourself and load state['model']")
    model = build_model(config["name"], config["num_classes"], **config.get("options", {}))
    model.load_state_dict(state["model"])
    return model


def load_model(path, expected_sha256: str | None = None, map_location="cpu") -> nn.Module:
    """Rebuild the model a checkpoint was saved from (``build_model`` + its weights)."""
    return model_from_state(load_checkpoint(path, expected_sha256, map_location), str(path))
