"""Time to accuracy: validation mIoU after a fixed CPU budget, with PyTorch's defaults and with the course's settings.

FCN-8s, DeepLabV3+ and Gated-SCNN (and, new settings only, Gated-SCNN with its shape
stream at stride 4) train on SynthCity with the zoo's recipe (128 px,
1500 scenes, batch 8, AdamW lr 5e-3, the poly schedule over the budget, the pre-trained
encoder) for 60 s and for 120 s of wall time, 2 threads, and are scored on notebook 06's
validation set (200 scenes, seed 1). Every run is a fresh process, since how OpenMP
threads wait is fixed when the process starts:

* "old" is PyTorch's defaults as far as speed goes: threads sleep at once
  (OMP_WAIT_POLICY=PASSIVE), NCHW tensors, PyTorch's per-tensor AdamW loop, and FCN's
  upsampling through ConvTranspose2d (the layer's own weights; the polyphase form computes
  the same sums);
* "new" is the course's settings: brief spinning (course_utils.threads),
  channels_last, fused AdamW, polyphase upsampling. bf16 is never chosen on a CPU without
  native bf16, and torch.compile is left out (compiling takes about as long as the 60 s
  budget; bench_models.py times it).

The ratio is new mIoU / old mIoU. Targets: FCN-8s >= 0.649 within 60 s; DeepLabV3+ >= 0.75
within 120 s. Then the zoo's recipe is re-timed: its first 100 steps per model, old and
new, and the 24-epoch training time they imply. About half an hour on two cores (the
benchmark results give the last run's time); timings on a shared machine are pessimistic.
usage: python benchmarks/run.py time_to_accuracy
"""
import json
import subprocess
import sys
from pathlib import Path

from common import apply_setting, as_before, setting_env, verdict

# Row name -> (model, options); "gscnn c2" (shape stream at stride 4) is new, so it has no "old" run.
MODELS = {"fcn8s": ("fcn8s", {}), "deeplabv3plus": ("deeplabv3plus", {}), "gscnn": ("gscnn", {}),
          "gscnn c2": ("gscnn", {"shape_level": "c2"})}
BUDGETS = (60, 120)
SETTINGS = ("old", "new")
TARGETS = {("fcn8s", 60): 0.649, ("deeplabv3plus", 120): 0.75}
THREADS = 2
ZOO_STEPS = 100


def worker(name: str, budget: float, setting: str, max_steps: int = 0) -> dict:
    import torch

    from course_utils.datasets import CLASSES, SynthCity
    from course_utils.models import build_model
    from course_utils.pretrain import load_encoder
    from course_utils.training import StopAt, TrainConfig, evaluate, fit, make_loader
    from course_utils.zoo import RECIPE, ZOO_MODELS

    layout = apply_setting(setting)
    torch.set_num_threads(THREADS)
    train_set = SynthCity(RECIPE.n_train, RECIPE.size, seed=RECIPE.train_seed, augment=True)
    torch.manual_seed(RECIPE.seed)
    arch, options = MODELS.get(name, (name, {}))
    model = build_model(arch, len(CLASSES), width=RECIPE.width, **ZOO_MODELS[arch], **options)
    if setting == "old":
        as_before(model)
    if RECIPE.pretrained_encoder:
        load_encoder(model)
    loader = make_loader(train_set, RECIPE.batch_size, shuffle=True, device="cpu", seed=RECIPE.seed)
    # With max_steps, the run times the zoo's own 24-epoch plan (its learning-rate schedule),
    # stopped early; without, the schedule spans the time budget.
    config = TrainConfig(epochs=RECIPE.epochs if max_steps else 1000, time_budget_s=None if max_steps else budget,
                         lr=RECIPE.lr, weight_decay=RECIPE.weight_decay, amp=False, keep="last", progress=False,
                         **layout)
    history = fit(model, loader, config=config, device="cpu",
                  callbacks=[StopAt(max_steps)] if max_steps else ())
    if max_steps:
        return {"steps": history.steps, "train_time_s": history.train_time_s,
                "planned_steps": RECIPE.epochs * len(loader)}
    cm = evaluate(model, make_loader(SynthCity(200, 128, seed=1), 32, device="cpu"), len(CLASSES), device="cpu")
    return {"miou": cm.miou(), "steps": history.steps}


def run(name, budget, setting, max_steps=0) -> dict:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", name, str(budget), setting,
                          str(max_steps)],
                         env=setting_env(setting), capture_output=True, text=True, timeout=1200)
    if out.returncode:
        raise RuntimeError(f"{name} {budget} s {setting} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    results = {}
    for name in MODELS:
        for budget in BUDGETS:
            for setting in SETTINGS if name != "gscnn c2" else ("new",):
                r = results[name, budget, setting] = run(name, budget, setting)
                print(f"  {name:<14}{budget:>4} s {setting}: mIoU {r['miou']:.3f} after {r['steps']} steps", flush=True)
    print(f"validation mIoU after a {THREADS}-thread CPU budget (old: PyTorch's defaults; new: the course's settings)")
    print(f"{'model':<15}{'budget':>7}{'old':>8}{'new':>8}{'new/old':>9}{'steps old/new':>15}")
    for name in MODELS:
        for budget in BUDGETS:
            new = results[name, budget, "new"]
            old = results.get((name, budget, "old"))
            if old is None:
                print(f"{name:<15}{budget:>6}s{'-':>8}{new['miou']:>8.3f}{'-':>9}{'-/' + str(new['steps']):>15}")
                continue
            print(f"{name:<15}{budget:>6}s{old['miou']:>8.3f}{new['miou']:>8.3f}{new['miou'] / old['miou']:>9.2f}"
                  f"{str(old['steps']) + '/' + str(new['steps']):>15}")
    for (name, budget), target in TARGETS.items():
        best = results[name, budget, "new"]["miou"]
        print(f"{name} within {budget} s: mIoU {best:.3f} (target >= {target}: {verdict(best >= target)})")
    retime_zoo()


def retime_zoo(models=("fcn8s", "pspnet", "deeplabv3plus", "gscnn"), steps: int = ZOO_STEPS):
    """The zoo's recipe re-timed: seconds per step over its first steps, old and new, and the
    24-epoch training it implies (the zoo itself is not retrained here)."""
    print(f"zoo recipe re-timed ({steps} steps each, {THREADS} threads; full plan projected from them)")
    print(f"{'model':<15}{'s/step old':>11}{'new':>8}{'old/new':>9}{'24 epochs old':>15}{'new':>8}")
    for name in models:
        old, new = (run(name, 0, setting, steps) for setting in SETTINGS)
        so, sn = old["train_time_s"] / old["steps"], new["train_time_s"] / new["steps"]
        plan = new["planned_steps"]
        print(f"{name:<15}{so:>11.3f}{sn:>8.3f}{so / sn:>9.2f}{so * plan / 60:>13.1f} m{sn * plan / 60:>6.1f} m",
              flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        print(json.dumps(worker(sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5]))))
    else:
        main()
