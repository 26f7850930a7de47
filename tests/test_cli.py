"""The command-line trainer and evaluator, on one process and under torchrun (gloo, CPU).

Tiny SynthCity runs (16 scenes of 32x32, FCN-8s of width 8): the point is that the files,
the resumption and the distributed arithmetic are right, not that the model learns.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils.cli import evaluate as evaluate_cli
from course_utils.cli import train as train_cli
from course_utils.datasets import CLASSES, SynthCity
from course_utils.models import build_model
from course_utils.training import load_checkpoint, load_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# The venv's torchrun script, or the module behind it where no script was installed.
_SCRIPT = Path(sys.executable).with_name("torchrun")
TORCHRUN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "torch.distributed.run"]
# GroupNorm and no dropout: then a batch split over two processes, with DDP averaging the
# gradients, takes the same step as the whole batch in one process (BatchNorm would
# normalise each half separately, dropout would draw different masks).
MODEL = ["--model", "fcn8s", "--model-option", "width=8", "--model-option", "norm=group",
         "--model-option", "dropout=0"]
DATA = ["--data", "synthcity", "--size", "32", "--n-train", "16", "--n-val", "8"]
# fp32: on a CPU with native bf16 the policy would train in bf16, whose rounding alone
# moves one and two processes apart by more than the tolerance below.
RUN = MODEL + DATA + ["--epochs", "2", "--batch-size", "4", "--lr", "0.01", "--no-augment", "--no-amp", "--quiet"]
EVAL = DATA[:2] + ["--size", "32", "--n-val", "8", "--no-amp"]      # fp32, as the references by hand
STEPS = 2 * 16 // 4


pytestmark = pytest.mark.usefixtures("one_thread", "on_the_cpu")


@pytest.fixture(scope="module", autouse=True)
def on_the_cpu():
    """These tests mean the CPU (gloo), also on a machine with GPUs: in-process runs and
    the torchrun children (which inherit the variable) are pinned by COURSE_DEVICE."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_DEVICE", "cpu")
        yield


def env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT),
                TQDM_DISABLE="1", COURSE_DEVICE="cpu", **extra)


def weights(path):
    return load_checkpoint(path)["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted single-process run, shared by the tests below."""
    out = tmp_path_factory.mktemp("reference")
    assert train_cli.main(RUN + ["--out", str(out)]) == 0
    return out


def test_train_writes_config_log_plot_and_checkpoints(reference):
    names = sorted(p.name for p in reference.iterdir())
    assert names == ["best.pt", "config.json", "curves.png", "latest.pt", "metrics.csv"]  # no temp files left
    config = json.loads((reference / "config.json").read_text())
    assert config["world_size"] == 1 and config["per_process_batch"] == 4 and config["num_classes"] == 9
    assert config["train_config"]["epochs"] == 2 and config["args"]["model"] == "fcn8s"
    lines = (reference / "metrics.csv").read_text().splitlines()
    assert lines[0] == ",".join(train_cli.METRIC_COLUMNS) and len(lines) == 3
    assert [line.split(",")[:2] for line in lines[1:]] == [["1", "4"], ["2", "8"]]
    assert (reference / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = load_checkpoint(reference / "latest.pt")
    assert state["trainer"]["step"] == STEPS and state["trainer"]["epoch"] == 2
    assert state["model_config"]["options"] == {"width": 8, "norm": "group", "dropout": 0}
    assert load_model(reference / "best.pt").num_classes == 9


def predictions(checkpoint):
    """The checkpoint's predictions on the validation scenes, and the true labels."""
    return predictions_of(load_model(checkpoint), SynthCity(8, size=32, seed=10_000))


def predictions_of(model, data):
    # In the memory layout the evaluator uses on the CPU (channels_last): an NCHW forward sums
    # in another order, and a barely trained model's near-tied logits then flip a few pixels.
    model.eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        images = (data.images.float() / 255).contiguous(memory_format=torch.channels_last)
        pred = model(images).argmax(1).numpy()
    return pred, data.labels.numpy().astype(np.int64)


def confusion_by_hand(pred, true):
    """The confusion matrix by np.bincount (independent of metrics.py)."""
    return np.bincount(true.ravel() * 9 + pred.ravel(), minlength=81).reshape(9, 9)


def test_evaluate_prints_the_table_and_json(reference, capsys):
    checkpoint = str(reference / "latest.pt")
    assert evaluate_cli.main(["--checkpoint", checkpoint] + EVAL) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in CLASSES) and "IoU %" in text and "mIoU" in text
    assert evaluate_cli.main(["--checkpoint", checkpoint, "--json"] + EVAL) == 0
    result = json.loads(capsys.readouterr().out)
    pred, true = predictions(checkpoint)
    cm = confusion_by_hand(pred, true)
    assert result["confusion_matrix"] == cm.tolist() and result["pixels"] == 8 * 32 * 32
    inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    iou = [i / u if u else None for i, u in zip(inter, union)]
    assert result["iou"] == pytest.approx(iou)
    assert result["miou"] == pytest.approx(np.mean([v for v in iou if v is not None]))
    assert result["pixel_accuracy"] == pytest.approx(inter.sum() / cm.sum())
    assert result["classes"] == list(CLASSES)
    if result["boundary_f1"] is not None:        # when course_utils.metrics has the boundary F-score
        from course_utils.metrics import boundary_f1

        assert "boundary F (2 px)" in text
        assert result["boundary_f1"] == pytest.approx(boundary_f1(pred, true, 2.0))


def torchrun(*args, timeout=120, **extra_env):
    cmd = [*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", *args]
    return subprocess.run(cmd, env=env(**extra_env), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# Measured: max |difference| ~6e-6 on weights of size up to ~1.3 (float32 sums in another order).
WEIGHT_ATOL = 1e-4


@pytest.mark.slow
def test_two_processes_end_with_the_weights_of_one(reference, tmp_path):
    # channels_last (the CPU default, explicit here) converted before the DDP wrapper, and
    # every warning an error: DDP's "grad strides do not match bucket view strides" fails it.
    t0 = time.perf_counter()
    done = torchrun("course_utils.train", *RUN, "--channels-last", "--out", str(tmp_path),
                    PYTHONWARNINGS="error")
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in reference.iterdir())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["world_size"] == 2 and config["per_process_batch"] == 2
    assert done.stdout.count("stopped by epochs") == 1        # rank 0 alone reports
    one, two = weights(reference / "latest.pt"), weights(tmp_path / "latest.pt")
    assert one.keys() == two.keys()
    worst = max((one[k].double() - two[k].double()).abs().max().item() for k in one)
    print(f"two processes: {seconds:.1f} s, max |weight difference| {worst:.2e}")
    assert worst < WEIGHT_ATOL
    assert load_checkpoint(tmp_path / "latest.pt")["trainer"]["step"] == STEPS


@pytest.mark.slow
def test_two_processes_with_one_validation_image_finish(tmp_path):
    # Rank 1 has no validation batch: it must still join the sums, and validation must not
    # go through DDP's forward (its buffer broadcast would wait for rank 0 forever).
    args = MODEL + ["--data", "synthcity", "--size", "32", "--n-train", "8", "--n-val", "1", "--epochs", "2",
                    "--batch-size", "4", "--no-augment", "--quiet", "--out", str(tmp_path)]
    done = torchrun("course_utils.train", *args, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    state = load_checkpoint(tmp_path / "latest.pt")
    history = state["history"]
    assert len(history["val_miou"]) == 2 and state["trainer"]["step"] == 2 * 8 // 4
    # The validation mIoU is the one image's (rank 0's share summed with rank 1's nothing);
    # the tolerance allows a pixel or two where channels_last rounds a near-tie differently.
    pred, true = predictions_of(load_model(tmp_path / "latest.pt"), SynthCity(1, size=32, seed=10_000))
    cm = confusion_by_hand(pred, true)
    inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    assert history["val_miou"][-1] == pytest.approx(np.mean([i / u for i, u in zip(inter, union) if u]), abs=2e-3)


@pytest.mark.slow
def test_two_process_evaluation_all_reduces_to_the_one_process_matrix(reference, capsys):
    checkpoint = str(reference / "latest.pt")
    assert evaluate_cli.main(["--checkpoint", checkpoint, "--json"] + EVAL) == 0
    single = json.loads(capsys.readouterr().out)
    # Batch 3 per process: 8 images in shards of 4 give batches of 3 and 1, so the
    # uneven last batch is exercised too.
    done = torchrun("course_utils.evaluate", "--checkpoint", checkpoint, "--json", "--batch-size", "3", *EVAL)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1                                      # printed by rank 0 only
    double = json.loads(lines[0])
    assert double["processes"] == 2 and single["processes"] == 1
    assert double["confusion_matrix"] == single["confusion_matrix"]
    assert double["pixels"] == single["pixels"] == 8 * 32 * 32
    assert double["boundary_counts"] == single["boundary_counts"]


def test_the_command_line_trains_gscnn_with_its_own_loss(tmp_path, monkeypatch):
    from course_utils.losses import GSCNNLoss

    parts = []
    real_call = GSCNNLoss.__call__

    def spy(self, output, labels):
        total = real_call(self, output, labels)
        parts.append(set(self.last_tensors))
        return total

    monkeypatch.setattr(GSCNNLoss, "__call__", spy)
    args = ["--model", "gscnn", "--model-option", "width=8", "--pretrained-encoder", "no", *DATA,
            "--epochs", "1", "--batch-size", "4", "--max-steps", "2", "--quiet", "--out", str(tmp_path)]
    assert train_cli.main(args) == 0
    assert len(parts) == 2 and all(p == {"seg", "edge", "dual"} for p in parts)
    assert json.loads((tmp_path / "config.json").read_text())["loss"].startswith("GSCNNLoss(")


def test_a_run_stopped_mid_epoch_and_resumed_ends_like_an_uninterrupted_one(reference, tmp_path):
    out = ["--out", str(tmp_path)]
    assert train_cli.main(RUN + out + ["--max-steps", "3"]) == 0      # mid-way through epoch 1
    stopped = load_checkpoint(tmp_path / "latest.pt")["trainer"]
    assert (stopped["step"], stopped["epoch"], stopped["batch_in_epoch"]) == (3, 0, 3)
    assert train_cli.main(RUN + out + ["--resume"]) == 0
    resumed, uninterrupted = weights(tmp_path / "latest.pt"), weights(reference / "latest.pt")
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    h1 = load_checkpoint(tmp_path / "latest.pt")["history"]
    h0 = load_checkpoint(reference / "latest.pt")["history"]
    assert h1["step_loss"] == h0["step_loss"] and h1["step_lr"] == h0["step_lr"]
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3


def one_line_error(capsys, code, *words):
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    return err


@pytest.mark.parametrize("data, words", [
    ("imagenet:/data", ["unknown scheme 'imagenet'", "synthcity | voc:PATH | cityscapes:PATH"]),
    ("voc:/no/such/folder", ["'/no/such/folder'", "does not exist"]),
    ("cityscapes", ["needs a folder"]),
])
def test_bad_data_specs_are_one_line_errors(data, words, tmp_path, capsys):
    code = train_cli.main(MODEL + ["--data", data, "--out", str(tmp_path)])
    one_line_error(capsys, code, "course_utils.train: error:", *words)
    code = evaluate_cli.main(["--checkpoint", str(tmp_path / "x.pt"), "--data", data])
    one_line_error(capsys, code, "course_utils.evaluate: error:", *words)


def test_resume_without_a_checkpoint_is_an_error(tmp_path, capsys):
    code = train_cli.main(RUN + ["--out", str(tmp_path), "--resume"])
    one_line_error(capsys, code, "--resume", "latest.pt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="SyncBatchNorm works on CUDA")
def test_sync_bn_without_cuda_is_an_error(tmp_path, capsys):
    code = train_cli.main(RUN + ["--out", str(tmp_path), "--sync-bn"])
    one_line_error(capsys, code, "--sync-bn needs CUDA")


def test_resume_with_another_model_is_an_error(reference, tmp_path, capsys):
    (tmp_path / "latest.pt").write_bytes((reference / "latest.pt").read_bytes())
    args = ["--model", "fcn16s"] + RUN[2:] + ["--out", str(tmp_path), "--resume"]
    one_line_error(capsys, train_cli.main(args), "holds model 'fcn8s'", "'fcn16s'")


def test_checkpoint_with_another_class_count_is_an_error(tmp_path, capsys):
    path = tmp_path / "three.pt"
    save_checkpoint(path, build_model("fcn8s", 3, width=8))
    code = evaluate_cli.main(["--checkpoint", str(path)] + EVAL)
    one_line_error(capsys, code, "predicts 3 classes but the data has 9")
    code = evaluate_cli.main(["--checkpoint", str(tmp_path / "missing.pt")] + EVAL)
    one_line_error(capsys, code, "does not exist")


def test_the_real_command_exits_non_zero_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "course_utils.train", *MODEL, "--data", "mnist",
                           "--out", str(tmp_path)], env=env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("python -m course_utils.train: error: data must be")


def tiny_voc(root, n=4, size=(20, 28)):
    """A Pascal-VOC-shaped folder: flat images with a class-15 (person) box and a void border."""
    from PIL import Image

    from course_utils.datasets import VOC_PALETTE

    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    ids = [f"2007_{k:06d}" for k in range(n)]
    for k, name in enumerate(ids):
        Image.fromarray(np.full((*size, 3), 30 + 50 * k, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        label = np.zeros(size, np.uint8)
        label[4:14, 6:20] = 15
        label[4:14, 5] = 255
        png = Image.fromarray(label, mode="P")
        png.putpalette(VOC_PALETTE.ravel().tolist())
        png.save(root / "SegmentationClass" / f"{name}.png")
    for split in ("train", "val"):
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def test_a_voc_folder_trains_with_crops_and_evaluates_at_full_size(tmp_path, capsys):
    voc = tiny_voc(tmp_path / "VOC2012")
    out = tmp_path / "run"
    args = MODEL + ["--data", f"voc:{tmp_path}", "--out", str(out), "--epochs", "1", "--batch-size", "2",
                    "--crop", "16", "16", "--quiet"]
    assert train_cli.main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 21 and config["train_size"] == 4
    capsys.readouterr()
    assert evaluate_cli.main(["--checkpoint", str(out / "best.pt"), "--data", f"voc:{voc}", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes"][15] == "person" and len(result["iou"]) == 21
    assert result["pixels"] == 4 * (20 * 28 - 10)          # every pixel but the void ones


def test_a_folder_without_the_layout_names_what_is_missing(tmp_path, capsys):
    code = train_cli.main(MODEL + ["--data", f"cityscapes:{tmp_path}", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("python -m course_utils.train: error:") and "leftImg8bit/train/" in err


# -- the command line stays apart from the library ----------------------------------------------
# The entry points kept at their documented names (`python -m course_utils.train`, ...) are
# command-line modules themselves; everything else in course_utils is library.
ENTRY_SHIMS = {"course_utils.train", "course_utils.evaluate"}


def library_modules():
    import pkgutil

    import course_utils

    names = [m.name for m in pkgutil.walk_packages(course_utils.__path__, "course_utils.")]
    return sorted(n for n in names if not n.startswith("course_utils.cli") and n not in ENTRY_SHIMS)


def _imports(tree, skip_main_guard=False):
    """(module, level, names) of every import statement, with ``skip_main_guard`` not those inside
    ``if __name__ == "__main__":``."""
    import ast

    found = []

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if skip_main_guard and isinstance(child, ast.If) and "__main__" in ast.unparse(child.test) and \
                    "__name__" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, 0, []) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.append((child.module or "", child.level, [a.name for a in child.names]))
            walk(child)

    walk(tree)
    return found


def test_no_library_module_imports_the_command_line():
    import ast
    import importlib.util

    offenders = []
    for name in library_modules():
        path = importlib.util.find_spec(name).origin
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        # Not even under `if __name__ == "__main__":`: the library's files stay free of the
        # command line, so the import graph has no loop (python -m course_utils.cli.zoo runs it).
        for module, level, names in _imports(ast.parse(Path(path).read_text())):
            if level:
                base = package.split(".")
                base = base[:len(base) - (level - 1)]
                module = ".".join(base + ([module] if module else []))
            targets = [module] + [f"{module}.{n}" for n in names]
            if any(t == "course_utils.cli" or t.startswith("course_utils.cli.") for t in targets) or \
                    any(t in ENTRY_SHIMS for t in targets):
                offenders.append(f"{name} imports {module} {names}")
    assert len(library_modules()) > 30          # the walk found the package
    assert offenders == []
    # And at run time: importing every library module loads nothing of the command line.
    code = ("import importlib, sys\n"
            f"for n in {library_modules()!r}: importlib.import_module(n)\n"
            "bad = sorted(m for m in sys.modules if m.startswith('course_utils.cli') or m in "
            f"{sorted(ENTRY_SHIMS)!r})\n"
            "print(bad)")
    done = subprocess.run([sys.executable, "-c", code], env=env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_import_check_sees_a_relative_import_of_the_command_line():
    import ast

    tree = ast.parse("from .cli.train import main\nif __name__ == '__main__':\n    from .cli import zoo\n")
    assert _imports(tree, skip_main_guard=True) == [("cli.train", 1, ["main"])]
    assert _imports(tree) == [("cli.train", 1, ["main"]), ("cli", 1, ["zoo"])]


# -- joining a process group (mocked: CI has no GPU) ---------------------------------------------
class FakeDist:
    def __init__(self):
        self.calls = []
        self.initialized = False

    def install(self, monkeypatch):
        import torch.distributed as dist

        monkeypatch.setattr(dist, "is_initialized", lambda: self.initialized)
        monkeypatch.setattr(dist, "init_process_group", self.init_process_group)
        monkeypatch.setattr(dist, "get_rank", lambda group=None: 3)
        monkeypatch.setattr(dist, "get_world_size", lambda group=None: 4)

    def init_process_group(self, backend, **kwargs):
        self.calls.append((backend, kwargs))
        self.initialized = True


def torchrun_env(monkeypatch, local_rank=1):
    for key, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": str(local_rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)


def test_init_distributed_takes_the_gpu_of_its_local_rank_and_nccl(monkeypatch):
    from course_utils.cli.distributed import init_distributed

    torchrun_env(monkeypatch, local_rank=1)
    monkeypatch.delenv("COURSE_DEVICE")
    fake = FakeDist()
    fake.install(monkeypatch)
    selected = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: selected.append(torch.device(device)))
    rank, world, device = init_distributed()
    assert (rank, world, device) == (3, 4, torch.device("cuda", 1))
    assert selected == [torch.device("cuda", 1)]          # NCCL's collectives run on the current device
    [(backend, kwargs)] = fake.calls
    assert backend == "nccl" and kwargs["device_id"] == torch.device("cuda", 1)


def test_init_distributed_honours_course_device_cpu_on_a_gpu_machine(monkeypatch):
    from course_utils.cli.distributed import init_distributed

    torchrun_env(monkeypatch)
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    fake = FakeDist()
    fake.install(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("a GPU was selected"))
    assert init_distributed() == (3, 4, torch.device("cpu"))
    assert fake.calls == [("gloo", {"init_method": "env://"})]


def test_init_distributed_refuses_more_processes_than_gpus(monkeypatch):
    from course_utils.cli.distributed import init_distributed

    torchrun_env(monkeypatch, local_rank=2)
    monkeypatch.delenv("COURSE_DEVICE")
    FakeDist().install(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="LOCAL_RANK 2 but only 2 CUDA device"):
        init_distributed()
