"""One precision policy for training, evaluation, the command line and the device report.

Mixed precision is a choice of (autocast dtype, gradient scaler) per device:

* CUDA with native bf16 (compute capability >= 8.0: A100, RTX 30xx and newer): bf16, no
  scaler (bf16 has fp32's exponent range, gradients do not underflow).
* CUDA with fp16 tensor cores but no bf16 (V100, T4, RTX 20xx: capability 7.x): fp16
  with a gradient scaler. ``torch.cuda.is_bf16_supported()`` is not asked: by default it
  also counts emulated bf16, which is true on 7.x GPUs and slow there.
* Older CUDA GPUs (Pascal and before: capability below 7.0): fp32. They have no tensor
  cores, so fp16 buys no arithmetic speed, and most of them (6.1: GTX 10xx, P4, P40) run
  fp16 at a small fraction of their fp32 rate. ``amp=True`` still gives fp16 with a
  scaler there, since the arithmetic is native, only slow.
* CPU: bf16 only where the CPU has native bf16 instructions (AVX512-BF16 or AMX), and
  with ``amp=None`` only where a short timed probe (:func:`cpu_bf16_speedup`, once per
  process) finds a training step of a small conv net at least ``CPU_BF16_MIN_SPEEDUP``
  times faster in bf16: on small course models the casts can eat the gain. On other CPUs
  autocast to bf16 emulates the arithmetic (measured on an AVX2-only EPYC: ~1 GFLOP/s
  against 170 in fp32), so it is never chosen, the probe never runs, and ``amp=True``
  there is refused with a sentence.
* MPS, or mixed precision off: no autocast context at all (``contextlib.nullcontext``);
  constructing ``torch.autocast("mps", enabled=False)`` raises on older torch versions.

``amp=None`` means "the policy decides", ``True`` asks for mixed precision (an error
where the device cannot give it natively), ``False`` turns it off. The environment variable
``COURSE_AMP`` (``0`` or ``1``) stands in for ``amp=None``, like ``COURSE_DEVICE`` for the
device: the Makefile's ``test``, ``refs`` and ``course`` set ``COURSE_AMP=0``, so the
notebooks' stored outputs (computed in fp32) hold on a CPU with native bf16 too. Losses, the argmax and
the metrics stay in fp32 whatever the policy says (callers cast logits with ``.float()``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time

import torch

__all__ = ["Precision", "choose_precision", "cpu_has_native_bf16", "cuda_has_native_bf16", "cuda_capability",
           "cpu_bf16_speedup", "CPU_BF16_MIN_SPEEDUP", "CUDA_BF16_CAPABILITY", "CUDA_FP16_CAPABILITY", "FULL"]

# bf16 autocast on a CPU is chosen by default only when the probe measures at least this
# speed-up: below it, a difference of a few percent is within the noise of a shared machine
# and not worth bf16's coarser rounding.
CPU_BF16_MIN_SPEEDUP = 1.2

# Compute capabilities from which CUDA mixed precision pays: bf16 tensor cores arrived with
# Ampere (8.0), fp16 tensor cores with Volta (7.0).
CUDA_BF16_CAPABILITY = (8, 0)
CUDA_FP16_CAPABILITY = (7, 0)


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


def cuda_capability(device=None) -> tuple[int, int]:
    """The CUDA device's compute capability ``(major, minor)``; ``(0, 0)`` without CUDA."""
    if not torch.cuda.is_available():
        return (0, 0)
    major, minor = torch.cuda.get_device_capability(device)
    return int(major), int(minor)


def cuda_has_native_bf16(device=None) -> bool:
    """True on GPUs with bf16 tensor cores (compute capability 8.0 or newer)."""
    return cuda_capability(device) >= CUDA_BF16_CAPABILITY


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


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup(size: int = 64, channels: int = 32, repeat: int = 3) -> float:
    """fp32 time / bf16-autocast time of a training step of a small conv net on this CPU.

    Measured once per process (cached), in well under a second where bf16 is native;
    call it only there (:func:`choose_precision` does): with emulated bf16 it would take
    long, to say what is already known (bf16 is slower).
    """
    torch.manual_seed(0)
    # A training step needs autograd, also when the policy is first asked inside no_grad or
    # inference_mode (an evaluation).
    with torch.inference_mode(False), torch.enable_grad():
        fp32, bf16 = _probe_step_times(size, channels, repeat)
    return fp32 / max(bf16, 1e-9)


def _probe_step_times(size: int, channels: int, repeat: int) -> tuple[float, float]:
    """Best time of a training step of a small conv net in fp32 and in bf16 autocast."""
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(channels, 8, 1))
    x = torch.rand(4, 3, size, size)

    def best(precision: Precision) -> float:
        times = []
        for _ in range(repeat + 1):       # the first round warms up (kernels, allocator)
            start = time.perf_counter()
            with precision.autocast():
                loss = net(x).float().square().mean()
            loss.backward()
            times.append(time.perf_counter() - start)
        net.zero_grad(set_to_none=True)
        return min(times[1:])

    return best(Precision("cpu")), best(Precision("cpu", torch.bfloat16))


def amp_from_environment() -> bool | None:
    """``COURSE_AMP``: ``0`` (fp32), ``1`` (mixed precision), unset or ``auto`` (the policy decides)."""
    value = os.environ.get("COURSE_AMP", "").strip().lower()
    choices = {"": None, "auto": None, "0": False, "1": True}
    if value not in choices:
        raise ValueError(f"COURSE_AMP must be 0, 1 or auto (or unset), got {value!r}")
    return choices[value]


def choose_precision(device, amp: bool | None = None) -> Precision:
    """The precision policy for ``device`` (see the module docstring)."""
    if amp not in (None, True, False):
        raise ValueError(f"amp must be None (the policy decides), True or False; got {amp!r}")
    source = "amp=False"
    if amp is None:
        amp, source = amp_from_environment(), "COURSE_AMP=0"
    device = torch.device(device)
    kind = device.type
    if amp is False:
        return Precision(kind, reason=f"mixed precision turned off ({source})")
    if kind == "cuda":
        return _cuda_precision(device, amp)
    if kind == "cpu":
        if cpu_has_native_bf16():
            if amp is None:
                speedup = cpu_bf16_speedup()
                if speedup < CPU_BF16_MIN_SPEEDUP:
                    return Precision(kind, reason=f"CPU with native bf16, but measured only {speedup:.2f}x "
                                                  "faster than fp32 here: fp32")
                return Precision(kind, torch.bfloat16, False,
                                 f"CPU with native bf16, measured {speedup:.2f}x faster than fp32")
            return Precision(kind, torch.bfloat16, False, "CPU with native bf16 (AVX512-BF16 / AMX)")
        if amp:
            raise ValueError("amp=True needs a CPU with native bf16 (AVX512-BF16 or AMX); this CPU has "
                             "neither, and emulated bf16 is slower than fp32. Use amp=None or False.")
        return Precision(kind, reason="CPU without native bf16: fp32")
    if amp:
        raise ValueError(f"amp=True is not supported on {kind}: mixed precision runs on CUDA and on "
                         "CPUs with native bf16. Use amp=None or False.")
    return Precision(kind, reason=f"{kind}: fp32 (no autocast context)")


def _cuda_precision(device: torch.device, amp: bool | None) -> Precision:
    capability = cuda_capability(device)
    cc = "{}.{}".format(*capability)
    if capability >= CUDA_BF16_CAPABILITY:
        return Precision("cuda", torch.bfloat16, False, f"CUDA with native bf16 (compute capability {cc} >= 8.0)")
    if capability >= CUDA_FP16_CAPABILITY:
        return Precision("cuda", torch.float16, True,
                         f"CUDA with fp16 tensor cores but no bf16 (compute capability {cc}): fp16 with a "
                         "gradient scaler")
    if amp:
        return Precision("cuda", torch.float16, True,
                         f"fp16 with a gradient scaler, as asked (amp=True); compute capability {cc} has no "
                         "tensor cores, so it is likely slower than fp32 here")
    return Precision("cuda", reason=f"CUDA without tensor cores (compute capability {cc} < 7.0): fp32, "
                                    "since fp16 is no faster there")
