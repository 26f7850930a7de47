"""Each notebook's execution time in a fresh kernel, and the whole course's, against targets.

The same execution as `make refs` / `make course` (tools/run_notebooks.py's ``execute``,
with the Makefile's environment). Targets on the 2-core CI machine: each notebook
<= 3 min, the whole course <= 15 min. The widgets' latencies are in bench_widgets.
"""
import sys
from pathlib import Path

from common import verdict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from run_notebooks import execute  # noqa: E402

EACH_TARGET, TOTAL_TARGET = 180.0, 900.0


def main():
    notebooks = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    print(f"{'notebook':<36}{'seconds':>9}  verdict (each <= {EACH_TARGET:.0f} s)")
    total = 0.0
    for path in notebooks:
        _, seconds = execute(path)
        total += seconds
        print(f"{path.name:<36}{seconds:>9.1f}  {verdict(seconds <= EACH_TARGET)}", flush=True)
    print(f"{'all ' + str(len(notebooks)) + ' notebooks':<36}{total:>9.1f}  "
          f"{verdict(total <= TOTAL_TARGET)} (total <= {TOTAL_TARGET:.0f} s)")
