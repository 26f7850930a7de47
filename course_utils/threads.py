"""How PyTorch's CPU threads wait between operations: set before ``import torch``.

PyTorch runs each CPU operation on OpenMP threads. Between two operations the threads
either spin (fast to restart, but they hold their core) or sleep (they free the core,
but waking them costs time on every operation). The course's models are small, so a
training step is hundreds of short operations and the choice matters: sleeping at once
(``OMP_WAIT_POLICY=PASSIVE``) makes every operation pay the wake-up, and spinning for
ever (``ACTIVE``, or libgomp's long default spin) can collapse when two trainings share
the cores. So the course spins briefly, then sleeps (libgomp's ``GOMP_SPINCOUNT``, GCC's
libgomp manual, "GOMP_SPINCOUNT"), which Linux builds of PyTorch read;
``benchmarks/bench_threads.py`` measures the four settings side by side (the benchmark
results). Builds linked to LLVM's or Intel's OpenMP (macOS, Windows) read
``KMP_BLOCKTIME`` instead; the course sets it to 0 (sleep at once, what PASSIVE means
there: LLVM review D18577), unmeasured on those runtimes. A value the user set
(including ``OMP_WAIT_POLICY``) is left alone.
"""
from __future__ import annotations

import os

__all__ = ["OPENMP_WAITING", "configure_openmp_waiting"]

OPENMP_WAITING = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}


def configure_openmp_waiting(environ=None) -> dict:
    """Set :data:`OPENMP_WAITING` in ``environ`` (default ``os.environ``) where the user chose nothing.

    Must run before torch is first imported: the OpenMP runtime reads these variables once,
    when it starts. Returns the variables it set.
    """
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in environ:         # the user's choice overrides the spin counts anyway
        return {}
    chosen = {k: v for k, v in OPENMP_WAITING.items() if k not in environ}
    environ.update(chosen)
    return chosen
