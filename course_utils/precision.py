"""One precision policy for training, evaluation, the command line and the device report.

Mixed precision is a choice of (autocast dtype, gradient scaler) per device:

* CUDA with native bf16 (compute capability >= 8.0: A100, RTX 30xx and newer): bf16, no
  scaler (bf16 has fp32's exponent range, gradients do not underflow).
* CUDA without it (T4, V100: capability 7.x): fp16 with a gradient scaler.
  ``torch.cuda.is_bf16_supported()`` is not asked: by default it also counts emulated
  bf16, which is true on 7.x GPUs and slow there.
* CPU: bf16 only where the CPU has native bf16 instructions (AVX512-BF16 or AMX). On
  other CPUs autocast to bf16 emulates the arithmetic and is slower than fp32, so it is
  never chosen (and ``amp=True`` there is refused with a sentence).
* MPS, or mixed precision off: no autocast context at all (``contextlib.nullcontext``);
  constructing ``torch.autocast("mps", enabled=False)`` raises on older torch versions.

``amp=None`` means "the policy decides", ``True`` asks for mixed precision (an error
where the device cannot give it natively), ``False`` turns it off. Losses, the argmax and
the metrics stay in fp32 whatever the policy says (callers cast logits with ``.float()``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools

import torch

__all__ = ["Precision", "choose_precision", "cpu_has_native_bf16", "cuda_has_native_bf16", "FULL"]


@dataclasses.dataclass(frozen=True)
class Precision:
    """What mixed precision a run uses; ``dtype is None`` means full fp32, no autocast."""

    device_type: str
    dtype: torch.dtype | None = None
    use_scaler: bool = False
    reason: str = "mixed precision off"

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self):
        """A fresh autocast context, or a null context when mixed precision is off."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self):
        """A gradient scaler for fp16 on CUDA, else ``None`` (nothing to scale)."""
        if not self.use_scaler:
            return None
        return torch.amp.GradScaler(self.device_type)


FULL = Precision("cpu")


def cuda_has_native_bf16(device=None) -> bool:
    """True on GPUs with bf16 tensor cores (compute capability 8.0 or newer)."""
    if not torch.cuda.is_available():
        return False
    major, _minor = torch.cuda.get_device_capability(device)
    return major >= 8


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bf16 natively (AVX512-BF16 or AMX), read from oneDNN's ISA
    report or, failing that, the CPU flags of ``/proc/cpuinfo``."""
    isa = ""
    with contextlib.suppress(Exception):
        isa = torch.backends.cpu.get_cpu_capability().lower()  # "avx512", "amx", ...
    if "amx" in isa:
        return True
    flags = set()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def choose_precision(device, amp: bool | None = None) -> Precision:
    """The precision policy for ``device`` (see the module docstring)."""
    if amp not in (None, True, False):
        raise ValueError(f"amp must be None (the policy decides), True or False; got {amp!r}")
    device = torch.device(device)
    kind = device.type
    if amp is False:
        return Precision(kind, reason="mixed precision turned off (amp=False)")
    if kind == "cuda":
        if cuda_has_native_bf16(device):
            return Precision(kind, torch.bfloat16, False, "CUDA with native bf16 (compute capability >= 8.0)")
        return Precision(kind, torch.float16, True, "CUDA without native bf16: fp16 with a gradient scaler")
    if kind == "cpu":
        if cpu_has_native_bf16():
            if amp is None:
                # Worth it only where it is measured faster; the caller decides per model
                # (amp=True); the policy's default on CPU stays fp32.
                return Precision(kind, reason="CPU with native bf16: off unless asked (amp=True)")
            return Precision(kind, torch.bfloat16, False, "CPU with native bf16 (AVX512-BF16 / AMX)")
        if amp:
            raise ValueError("amp=True needs a CPU with native bf16 (AVX512-BF16 or AMX); this CPU has "
                             "neither, and emulated bf16 is slower than fp32. Use amp=None or False.")
        return Precision(kind, reason="CPU without native bf16: fp32")
    if amp:
        raise ValueError(f"amp=True is not supported on {kind}: mixed precision runs on CUDA and on "
                         "CPUs with native bf16. Use amp=None or False.")
    return Precision(kind, reason=f"{kind}: fp32 (no autocast context)")
