"""Random states, captured and restored, so a resumed run draws what the uninterrupted one drew.

A state holds the CPU generators (torch, NumPy, Python), the loader's generators (its
shuffle and worker seeds) and, when CUDA is in use, the generator of the *current* CUDA
device only. Each process of a distributed run drives one device, so that is all it
needs; storing every visible GPU's state would tie the checkpoint to the machine it was
written on. Restoring skips the CUDA part when there is no CUDA, so a checkpoint written
on four GPUs resumes on one, or on a laptop CPU.

:func:`rng_to_plain` / :func:`rng_from_plain` turn a state into tensors and plain Python
values, which ``torch.load(weights_only=True)`` accepts.
"""
from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state", "rng_to_plain", "rng_from_plain", "loader_generators"]


def loader_generators(loader) -> list:
    gens, seen = [], set()
    if loader is None:
        return gens
    candidates = (getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None),
                  getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None))
    for g in candidates:
        if isinstance(g, torch.Generator) and id(g) not in seen:
            seen.add(id(g))
            gens.append(g)
    return gens


def rng_state(loader=None) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "loader": [g.get_state() for g in loader_generators(loader)]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state(torch.cuda.current_device())
    return state


def set_rng_state(state: dict, loader=None) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda, torch.cuda.current_device())
    if loader is not None:
        for g, s in zip(loader_generators(loader), state["loader"]):
            g.set_state(s)


def rng_to_plain(state):
    if state is None:
        return None
    name, keys, pos, has_gauss, cached = state["numpy"]
    plain = dict(state)
    plain["numpy"] = (str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                      float(cached))
    version, internal, gauss = state["python"]
    plain["python"] = (version, list(internal), gauss)
    return plain


def rng_from_plain(plain):
    if plain is None:
        return None
    state = dict(plain)
    name, keys, pos, has_gauss, cached = plain["numpy"]
    state["numpy"] = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    version, internal, gauss = plain["python"]
    state["python"] = (version, tuple(internal), gauss)
    return state
