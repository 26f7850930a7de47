"""Every registered demo: median and p95 time of one control change (compute + PNG)."""
import numpy as np

from common import verdict
from course_utils.widgets import DEMOS
from course_utils.widgets.base import sweep

MEDIAN_TARGET, P95_TARGET = 0.050, 0.100


def main():
    print(f"{'demo':<22}{'changes':>8}{'median ms':>11}{'p95 ms':>9}  verdict (median <= 50, p95 <= 100)")
    for name in sorted(DEMOS):
        demo = DEMOS[name]()
        times = np.array([t for _, t in sweep(demo)])
        med, p95 = np.median(times), np.percentile(times, 95)
        ok = med <= MEDIAN_TARGET and p95 <= P95_TARGET
        print(f"{name:<22}{len(times):>8}{med * 1e3:>11.1f}{p95 * 1e3:>9.1f}  {verdict(ok)}")
