"""Time to accuracy: validation mIoU after a fixed CPU budget, old settings vs new defaults.

FCN-8s, DeepLabV3+ and Gated-SCNN train on SynthCity (128 px, the zoo recipe: batch 8,
AdamW lr 5e-3 with the poly schedule over the budget, the pre-trained encoder) for 60 s
and for 120 s of wall time, 2 threads, and are scored on notebook 06's validation set
(200 scenes, seed 1). "old" is fp32 NCHW; "new" is fp32 channels_last (bf16 is never
chosen on a CPU without native bf16; torch.compile is left out of these budgets because
compiling alone takes about as long as the 60 s budget, see bench_models.py). The
ratio is new mIoU / old mIoU. Targets: FCN-8s >= 0.649 within 60 s; DeepLabV3+ >= 0.75
within 120 s. Run alone: 12 training runs, about 20 minutes; timings on a shared
machine are pessimistic.
usage: python benchmarks/run.py time_to_accuracy
"""
import time

import torch

from common import verdict
from course_utils.datasets import CLASSES, SynthCity
from course_utils.losses import GSCNNLoss
from course_utils.models import build_model
from course_utils.pretrain import load_encoder
from course_utils.training import TrainConfig, evaluate, fit, make_loader
from course_utils.zoo import RECIPE, ZOO_MODELS

MODELS = ("fcn8s", "deeplabv3plus", "gscnn")
BUDGETS = (60, 120)
SETTINGS = {"old": {"channels_last": False}, "new": {"channels_last": True}}
TARGETS = {("fcn8s", 60): 0.649, ("deeplabv3plus", 120): 0.75}
THREADS = 2


def run(name, budget, settings, train_set, val_loader) -> tuple:
    torch.manual_seed(RECIPE.seed)
    model = build_model(name, len(CLASSES), width=RECIPE.width, **ZOO_MODELS[name])
    if RECIPE.pretrained_encoder:
        load_encoder(model)
    loader = make_loader(train_set, RECIPE.batch_size, shuffle=True, device="cpu", seed=RECIPE.seed)
    config = TrainConfig(epochs=1000, time_budget_s=budget, lr=RECIPE.lr, weight_decay=RECIPE.weight_decay,
                         amp=False, keep="last", progress=False, **settings)
    history = fit(model, loader, config=config, loss=GSCNNLoss() if name == "gscnn" else None, device="cpu")
    cm = evaluate(model, val_loader, len(CLASSES), device="cpu")
    return cm.miou(), history.steps


def main():
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    train_set = SynthCity(RECIPE.n_train, RECIPE.size, seed=RECIPE.train_seed, augment=True)
    val_loader = make_loader(SynthCity(200, 128, seed=1), 32, device="cpu")
    results = {}
    for name in MODELS:
        for budget in BUDGETS:
            for label, settings in SETTINGS.items():
                start = time.perf_counter()
                results[name, budget, label] = run(name, budget, settings, train_set, val_loader)
                miou, steps = results[name, budget, label]
                print(f"  {name:<14}{budget:>4} s {label}: mIoU {miou:.3f} after {steps} steps "
                      f"({time.perf_counter() - start:.0f} s with evaluation)", flush=True)
    torch.set_num_threads(threads)
    print(f"validation mIoU after a {THREADS}-thread CPU budget (old: fp32 NCHW; new: channels_last)")
    print(f"{'model':<15}{'budget':>7}{'old':>8}{'new':>8}{'new/old':>9}{'steps old/new':>15}")
    for name in MODELS:
        for budget in BUDGETS:
            (mo, so), (mn, sn) = results[name, budget, "old"], results[name, budget, "new"]
            print(f"{name:<15}{budget:>6}s{mo:>8.3f}{mn:>8.3f}{mn / mo:>9.2f}{f'{so}/{sn}':>15}")
    for (name, budget), target in TARGETS.items():
        best = max(results[name, budget, label][0] for label in SETTINGS)
        print(f"{name} within {budget} s: mIoU {best:.3f} (target >= {target}: {verdict(best >= target)})")


if __name__ == "__main__":
    main()
