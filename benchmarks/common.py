"""Timing helpers shared by the benchmark modules."""
import time

import numpy as np


def best_of(fn, repeat: int = 7, number: int = 1) -> float:
    """Median seconds of one call of ``fn`` over ``repeat`` rounds of ``number`` calls."""
    fn()  # warm-up: caches, lazy imports, allocator
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - start) / number)
    return float(np.median(rounds))


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


# -- PyTorch's defaults ("old") vs the course's settings ("new"), for benchmarks that train in fresh processes --
WAITING = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def setting_env(setting: str) -> dict:
    """The environment of a fresh process for ``setting``: "old" threads sleep at once
    (OMP_WAIT_POLICY=PASSIVE); "new" spin briefly (course_utils.threads)."""
    import os

    from course_utils.threads import configure_openmp_waiting

    env = {k: v for k, v in os.environ.items() if k not in WAITING}
    if setting == "old":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        configure_openmp_waiting(env)
    return env


def apply_setting(setting: str) -> dict:
    """In the fresh process: for "old", PyTorch's per-tensor AdamW loop inside ``fit``. Returns the
    TrainConfig options of the setting (old: NCHW; new: the defaults). Models built for "old"
    also go through :func:`as_before`."""
    if setting == "old":
        from course_utils.training import optimizer

        optimizer._fused_supported = lambda params: False
        return {"channels_last": False}
    return {}


def as_before(model):
    """``model`` with FCN's upsampling as PyTorch's layer computes it: each layer's own ConvTranspose2d
    on the zero-inserted grid (the same weights; the polyphase form computes the same sums)."""
    from course_utils.models import BilinearUpsample

    for m in model.modules():
        if isinstance(m, BilinearUpsample) and m.up is not None:
            m._polyphase = m.up.forward
    return model
