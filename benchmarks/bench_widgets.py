"""Every registered demo: median and p95 time of one control change (compute + PNG).

Wall time is what the instructor waits for; CPU time (this process only) is also shown,
because on a shared, loaded machine the wall time mostly measures the other processes.
"""
import time

import numpy as np

from common import verdict
from course_utils.widgets import DEMOS
from course_utils.widgets.base import PIXEL_DENSITY, sweep

MEDIAN_TARGET, P95_TARGET = 0.050, 0.100


def main():
    print(f"pictures rendered at {PIXEL_DENSITY}x pixel density")
    print(f"{'demo':<18}{'changes':>8}{'median ms':>11}{'p95 ms':>9}{'cpu med':>9}{'cpu p95':>9}"
          "  verdict on wall time (median <= 50, p95 <= 100)")
    for name in sorted(DEMOS):
        demo = DEMOS[name]()
        wall, cpu = [], []
        changes = sweep(demo)
        while True:
            start = time.process_time()
            try:
                _, seconds = next(changes)
            except StopIteration:
                break
            cpu.append(time.process_time() - start)
            wall.append(seconds)
        wall, cpu = np.array(wall), np.array(cpu)
        med, p95 = np.median(wall), np.percentile(wall, 95)
        ok = med <= MEDIAN_TARGET and p95 <= P95_TARGET
        print(f"{name:<18}{len(wall):>8}{med * 1e3:>11.1f}{p95 * 1e3:>9.1f}"
              f"{np.median(cpu) * 1e3:>9.1f}{np.percentile(cpu, 95) * 1e3:>9.1f}  {verdict(ok)}")
