"""mIoU reached per CPU-minute: FCN-8s on SynthCity with notebook 06's recipe, at two budgets.

``fit`` gets a wall-clock budget (its poly schedule anneals over it); the CPU time is this
process's (all threads), so on a machine that shares its cores the CPU figure stays honest
while the wall figure grows. The zoo's manifest adds the four models of notebook 08 as
they were trained (wall time, 2 threads), for comparison.
"""
import time

import torch

from course_utils.datasets import CLASSES, SynthCity
from course_utils.models import build_model
from course_utils.training import evaluate, fit, make_loader
from course_utils.zoo import read_zoo_manifest

BUDGETS_S = (30, 60)


def main():
    train = SynthCity(1000, 128, seed=0, augment=True)
    val_loader = make_loader(SynthCity(200, 128, seed=1), 32, device="cpu")
    print(f"{'budget s':>9}{'CPU s':>8}{'wall s':>8}{'images':>8}{'val mIoU':>10}{'mIoU / CPU-min':>16}")
    for budget in BUDGETS_S:
        torch.manual_seed(0)
        model = build_model("fcn8s", len(CLASSES), width=16)
        loader = make_loader(train, 4, shuffle=True, device="cpu", seed=0)
        wall, cpu = time.perf_counter(), time.process_time()
        history = fit(model, loader, time_budget_s=budget, lr=2e-2, device="cpu", progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        miou = evaluate(model, val_loader, len(CLASSES), device="cpu").miou()
        print(f"{budget:>9}{cpu:>8.0f}{wall:>8.0f}{history.images_seen:>8}{miou:>10.3f}{miou / (cpu / 60):>16.3f}")

    info = read_zoo_manifest()
    print(f"\nthe zoo (data/zoo, {info['recipe']['epochs']} epochs of {info['recipe']['n_train']} scenes, "
          f"{info.get('threads', '?')} threads; wall time)")
    print(f"{'model':<15}{'train s':>8}{'val mIoU':>10}{'mIoU / wall-min':>17}")
    for name, entry in info["models"].items():
        print(f"{name:<15}{entry['train_time_s']:>8.0f}{entry['val_miou']:>10.3f}"
              f"{entry['val_miou'] / (entry['train_time_s'] / 60):>17.3f}")


if __name__ == "__main__":
    main()
