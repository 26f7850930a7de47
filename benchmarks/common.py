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
