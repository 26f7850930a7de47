"""tools/gpu_check.py on the CPU: the quick check's JSON, and the GPU-only parts' code run on
the CPU (the CUDA calls mocked where a CPU has none), since CI has no GPU."""
import dataclasses
import importlib.util
import json
import math
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


CPU_PARTS = {"environment", "models", "upsampling"}
CUDA_PARTS = {"fp16_scaler", "syncs", "ddp", "zoo", "ddp_2gpu", "throughput"}


def test_the_quick_check_on_the_cpu_writes_one_json(gpu_check, tmp_path, capsys):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().splitlines()[-1].endswith(str(out.resolve()))     # where the JSON is, last
    assert printed.count("skipped (no CUDA)") == len(CUDA_PARTS)
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["quick"] is True
    parts = report["parts"]
    assert set(parts) == CPU_PARTS | CUDA_PARTS
    for name in CUDA_PARTS:
        assert parts[name] == {"status": "skipped", "reason": "no CUDA"}, name
    for name in CPU_PARTS:
        assert parts[name]["status"] == "ok", parts[name]
        assert 0 <= parts[name]["seconds"] <= parts[name]["cap_s"]
    env = parts["environment"]["result"]
    assert env["torch"] == torch.__version__ and env["cuda"] == torch.version.cuda
    assert env["gpu"] is None and env["compute_capability"] is None
    assert env["device_report"]["device"] == "cpu"
    models = parts["models"]["result"]["models"]
    assert list(models) == ["fcn8s", "pspnet", "deeplabv3plus", "gscnn"]
    for name, result in models.items():
        assert result["status"] == "ok" and result["losses_finite"], name
        assert result["steps"] == report["sizes"]["n_train"] // report["sizes"]["batch"]
        assert 0 <= result["val_miou_untrained"] <= 1 and result["reload_same_pixels"] >= 0.999
    up = parts["upsampling"]["result"]
    assert up["polyphase_ms"] > 0 and up["transposed_ms"] > 0 and up["auto_uses"] == "polyphase"
    assert up["faster"] == ("polyphase" if up["polyphase_ms"] <= up["transposed_ms"] else "transposed")
    assert report["plan"] == notebook_cuda_plan()


def test_a_failing_part_is_recorded_and_the_next_one_runs(gpu_check, tmp_path, monkeypatch):
    def broken(ctx, cap_s):
        raise RuntimeError("no such kernel")

    parts = tuple(dataclasses.replace(p, run=broken) if p.name == "environment" else p for p in gpu_check.PARTS)
    monkeypatch.setattr(gpu_check, "PARTS", parts)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--quick", "--device", "cpu", "--parts", "environment,upsampling", "--out", str(out)]) == 1
    report = json.loads(out.read_text())["parts"]
    assert report["environment"]["status"] == "failed"
    assert report["environment"]["error"] == "RuntimeError: no such kernel"
    assert report["upsampling"]["status"] == "ok"


def test_unknown_parts_are_refused(gpu_check, capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--parts", "models,speed"])
    assert "--parts must name parts among" in capsys.readouterr().err


# -- notebook 06's plan -------------------------------------------------------------------------------
def notebook_cuda_plan():
    """The dict literal on the line after ``if device.type == "cuda":`` in notebook 06, read
    as text (not by the tool's AST walk)."""
    cells = json.loads((ROOT / "notebooks" / "06_training_and_evaluation.ipynb").read_text())["cells"]
    for cell in cells:
        text = "".join(cell["source"])
        if 'if device.type == "cuda":' not in text:
            continue
        after = text.split('if device.type == "cuda":', 1)[1]
        start = after.index("plan = dict(") + len("plan = ")
        depth, end = 0, start
        for end, ch in enumerate(after[start:], start):    # to the parenthesis that closes dict(
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0 and ch == ")":
                break
        return eval(after[start:end + 1], {"dict": dict, "min": min, "max": max})   # noqa: S307 - our notebook
    raise AssertionError("notebook 06 has no CUDA plan")


def test_the_plan_comes_from_notebook_06(gpu_check, tmp_path):
    plan, source = gpu_check.notebook_plan()
    assert plan == notebook_cuda_plan() and source.endswith("06_training_and_evaluation.ipynb")
    empty = tmp_path / "empty.ipynb"
    empty.write_text(json.dumps({"cells": [{"cell_type": "code", "source": ["%matplotlib inline\n", "x = 1\n"]}]}))
    plan, source = gpu_check.notebook_plan(empty)
    assert plan == gpu_check.FALLBACK_PLAN and source.startswith("fallback")


# -- the GPU parts' code, run on the CPU ------------------------------------------------------------
TINY_PLAN = dict(size=32, n_train=16, n_val=4, epochs=1, batch_size=4, lr=1e-2, width=8, amp=False)


@pytest.fixture
def cpu_context(gpu_check):
    with tempfile.TemporaryDirectory() as workdir:
        yield gpu_check.Context(torch.device("cpu"), gpu_check.QUICK, Path(workdir), dict(TINY_PLAN), "test")


def test_forced_fp16_training_records_the_scale_it_ran_with(gpu_check, cpu_context):
    # CPU autocast has fp16 and a GradScaler too: the same bookkeeping as on a 7.x GPU.
    forced = gpu_check.Precision("cpu", torch.float16, True, "forced for the test")
    result = gpu_check.train_with_precision("fcn8s", cpu_context, forced)
    assert result["precision"] == "fp16" and result["steps"] == cpu_context.sizes.fp16_steps
    scales = [result["initial_scale"]] + result["scales"]
    assert len(scales) == result["steps"] + 1
    # GradScaler keeps the scale, or halves it on a skipped step (growth comes after 2000 steps).
    assert all(b in (a, a / 2) for a, b in zip(scales, scales[1:]))
    halvings = sum(b < a for a, b in zip(scales, scales[1:]))
    assert result["skipped_steps"] == halvings
    assert result["final_scale"] == result["initial_scale"] / 2 ** halvings
    assert result["losses_finite"] == all(math.isfinite(v) for v in (result["first_loss"], result["last_loss"]))


def test_the_policy_is_restored_after_forcing_a_precision(gpu_check):
    from course_utils.training import loop

    before = loop.choose_precision
    with gpu_check.forced_precision(gpu_check.Precision("cpu")):
        assert loop.choose_precision("cuda").dtype is None
    assert loop.choose_precision is before


def test_syncs_are_counted_over_the_steady_steps_only(gpu_check, cpu_context, monkeypatch):
    # No CUDA here: the debug mode is mocked, and reading the losses back (what syncs on a
    # GPU; on the CPU the trainer reads them every step) warns as torch would.
    from course_utils.training.loop import Trainer

    mode = {"now": 0, "set": []}

    def set_mode(value):
        mode["now"] = value
        mode["set"].append(value)

    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", set_mode)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    flush = Trainer._flush_losses

    def flush_and_warn(self, bar=None):
        if mode["now"] == "warn" and self._pending_losses:
            warnings.warn("called a synchronizing CUDA operation")
        return flush(self, bar)

    monkeypatch.setattr(Trainer, "_flush_losses", flush_and_warn)
    result = gpu_check.syncs(cpu_context, 60)
    sizes = cpu_context.sizes
    assert result["steps"] == sizes.sync_steps and result["after_steps"] == sizes.sync_warmup
    assert result["syncs"] == sizes.sync_steps and result["syncs_per_step"] == 1.0
    assert mode["now"] == 0 and mode["set"][0] == "warn"
    assert sum(result["where"].values()) == result["syncs"]


def test_every_throughput_variant_but_compiling_runs(gpu_check, cpu_context):
    # torch.compile on a CPU builds C++ kernels for minutes: that variant runs on GPUs only.
    variants = {k: v for k, v in gpu_check.VARIANTS.items() if k != "compiled"}
    assert "compiled" in gpu_check.VARIANTS and "as shipped" in variants
    result = gpu_check.throughput(cpu_context, 60, variants)
    assert result["plan"] == TINY_PLAN and set(result["variants"]) == set(variants)
    for name, v in result["variants"].items():
        assert v["status"] == "ok", (name, v)
        assert v["steps"] >= 1 and v["images_per_s"] == pytest.approx(v["steps"] * v["batch"] / v["seconds"], rel=0.01)
        assert v["gpu_utilisation_percent"] is None          # sampled on CUDA only
    assert result["variants"]["large batch (4x)"]["batch"] == 4 * TINY_PLAN["batch_size"]
    assert result["variants"]["resident on device"]["loader"] == "ResidentBatches"


def test_resident_batches_deal_every_scene_once_per_epoch(gpu_check):
    from course_utils.datasets import SynthCity

    data = SynthCity(10, 16, seed=0)
    batches = gpu_check.ResidentBatches(data, 3, "cpu")
    images = torch.cat([x for x, _ in batches])
    assert len(batches) == 3 and images.shape == (9, 3, 16, 16) and images.dtype == torch.float32
    # 9 distinct scenes of the 10, each as the data set holds it.
    picked = [next(i for i in range(10) if torch.equal(data.images[i].float() / 255, x)) for x in images]
    assert len(set(picked)) == 9


def test_the_ddp_child_trains_on_one_rank(gpu_check, cpu_context):
    # gloo and no SyncBatchNorm on the CPU (DDP refuses it off the GPU); warnings are errors.
    result = gpu_check.ddp(cpu_context, 120)
    assert result["backend"] == "gloo" and result["world_size"] == 1 and result["wrapped"] == "DistributedDataParallel"
    assert result["channels_last"] and result["losses_finite"] and result["warnings_are_errors"]
    assert result["steps"] == cpu_context.sizes.n_train // cpu_context.sizes.batch


def test_the_zoo_part_evaluates_every_manifest_model(gpu_check, cpu_context):
    from course_utils.zoo import read_zoo_manifest

    result = gpu_check.zoo(cpu_context, 120)
    assert list(result["models"]) == list(read_zoo_manifest()["models"])
    assert result["precision"] == "fp32" and result["scenes"] == cpu_context.sizes.zoo_val
    for name, r in result["models"].items():
        assert r["status"] == "ok" and 0 <= r["miou"] <= 1, name
        assert r["difference"] is None          # a subset of the scenes: not comparable with the manifest


def test_a_part_out_of_time_keeps_what_it_measured(gpu_check):
    def over_time():
        raise gpu_check.PartTimeout("over its time cap of 5 s")

    results = gpu_check.attempt_each({"a": lambda: {"x": 1}, "b": over_time, "c": lambda: {"x": 3}})
    assert results["a"] == {"status": "ok", "x": 1}
    assert results["b"]["status"] == "failed" and "time cap" in results["b"]["error"]
    assert results["c"] == {"status": "skipped", "reason": "time budget spent"}
    with pytest.raises(gpu_check.PartTimeout):
        with gpu_check.time_limit(0.05):
            while True:
                pass
