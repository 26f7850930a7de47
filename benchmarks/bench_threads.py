"""How OpenMP threads wait, measured: FCN-8s training steps alone and with two processes at once.

Each setting runs in fresh processes (the OpenMP runtime reads its variables at start):
libgomp's default, OMP_WAIT_POLICY=PASSIVE (sleep at once),
OMP_WAIT_POLICY=ACTIVE and the course's GOMP_SPINCOUNT=1000 (course_utils.threads).
A step is forward, cross-entropy, backward and fused AdamW at batch 8, 128 px, 2 threads;
the median of 8 steps after 3 warm-up steps. "two at once" starts two such processes
together, as when two notebooks train side by side; it is the case where spinning
threads fight over the cores. Ratios are PASSIVE's median / the setting's median.
"""
import os
import subprocess
import sys

from common import WAITING
from course_utils.threads import OPENMP_WAITING

STEP = r"""
import time, torch, torch.nn.functional as F
from course_utils.models import build_model
torch.set_num_threads(2); torch.manual_seed(0)
model = build_model("fcn8s", 9).train()
opt = torch.optim.AdamW(model.parameters(), 1e-3, fused=True)
x, y = torch.rand(8, 3, 128, 128), torch.randint(0, 9, (8, 128, 128))
times = []
for i in range(11):
    t = time.perf_counter()
    opt.zero_grad(); F.cross_entropy(model(x)["out"], y).backward(); opt.step()
    times.append(time.perf_counter() - t)
print(sorted(times[3:])[4])
"""
SETTINGS = {
    "libgomp default": {},
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
    f"course (GOMP_SPINCOUNT={OPENMP_WAITING['GOMP_SPINCOUNT']})": OPENMP_WAITING,
}


def median_step_ms(extra: dict, processes: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in WAITING}
    env.update(extra)
    procs = [subprocess.Popen([sys.executable, "-c", STEP], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    return max(float(o.strip()) for o in outs) * 1e3


def main():
    rows = {name: (median_step_ms(extra, 1), median_step_ms(extra, 2)) for name, extra in SETTINGS.items()}
    alone_ref, pair_ref = rows["PASSIVE"]
    print("FCN-8s step, batch 8, 128 px, 2 threads: median ms (PASSIVE / this)")
    print(f"{'setting':<30}{'alone':>18}{'two at once':>22}")
    for name, (alone, pair) in rows.items():
        print(f"{name:<30}{alone:>9.0f} ({alone_ref / alone:.2f}x){pair:>13.0f} ({pair_ref / pair:.2f}x)")


if __name__ == "__main__":
    main()
