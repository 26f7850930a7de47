"""Which device trains the models: CUDA, then Apple MPS, then the CPU."""
from __future__ import annotations

import os
import platform

import torch


def select_device(prefer: str | None = None) -> torch.device:
    """The best available device, or ``prefer`` ("cuda", "mps", "cpu") when given.

    The environment variable ``COURSE_DEVICE`` overrides the choice, so a class can pin
    every notebook to the CPU (e.g. on a shared GPU) without editing cells.
    """
    prefer = prefer or os.environ.get("COURSE_DEVICE")
    if prefer:
        if prefer not in ("cuda", "mps", "cpu"):
            raise ValueError(f"prefer must be one of 'cuda', 'mps', 'cpu'; got {prefer!r}")
        if prefer == "cuda" and not torch.cuda.is_available():
            raise ValueError("prefer='cuda' but torch.cuda.is_available() is False")
        if prefer == "mps" and not _mps_available():
            raise ValueError("prefer='mps' but torch.backends.mps.is_available() is False")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def device_report(device: torch.device | None = None) -> dict:
    """Facts about the device, for the welcome notebook's check.

    ``precision`` is what training and evaluation will use there: the choice of
    :func:`course_utils.precision.choose_precision` (``"bf16"``, ``"fp16"`` with a
    gradient scaler, or ``"fp32"``), with the policy's reason.
    """
    from .precision import choose_precision

    device = torch.device(device) if device is not None else select_device()
    policy = choose_precision(device)
    info = {"device": device.type, "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
            "machine": platform.machine(), "precision": policy.name, "grad_scaler": policy.use_scaler,
            "precision_reason": policy.reason}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}")
    return info


CORE_LIBRARIES = ("torch", "numpy", "scipy", "matplotlib", "ipywidgets", "jupyterlab", "tqdm")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries the course runs on."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in CORE_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def unmet_requirements() -> list[str]:
    """The course's declared minimum versions (from its installed metadata) not met here."""
    import re
    from importlib.metadata import PackageNotFoundError, requires, version

    problems = []
    for req in requires("course_utils") or []:
        if "extra ==" in req:
            continue
        m = re.match(r"([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9.]+))?", req)
        name, minimum = m.group(1), m.group(2)
        try:
            have = version(name)
        except PackageNotFoundError:
            problems.append(f"{name} is not installed")
            continue
        if minimum and _version_tuple(have) < _version_tuple(minimum):
            problems.append(f"{name} {have} is older than the required {minimum}")
    return problems


def _version_tuple(v: str) -> tuple:
    import re

    return tuple(int(p) for p in re.findall(r"\d+", v.split("+")[0])[:3])
