"""course_utils.training on tiny random data sets (fast, CPU, deterministic)."""
import math
import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import training
from course_utils.metrics import ConfusionMatrix
from course_utils.models import build_model
from course_utils.training import History, evaluate, fit, load_checkpoint, load_model, save_checkpoint, sha256_file
from course_utils.training.loop import Trainer
from helpers import InterruptAt

NUM_CLASSES = 3
SIZE = 24


def blocks_dataset(n=16, seed=0):
    """Images of 8x8 colour blocks; a block's class is its brightest channel (FCN-8s can learn it)."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.rand(n, 3, SIZE // 8, SIZE // 8, generator=g)
    images = cells.repeat_interleave(8, 2).repeat_interleave(8, 3)
    images = (images + 0.05 * torch.randn(images.shape, generator=g)).clamp(0, 1)
    labels = cells.argmax(1).repeat_interleave(8, 1).repeat_interleave(8, 2)
    labels[:, 0, :] = 255     # a void row, as in real data
    return TensorDataset(images, labels)


def loaders(seed=0, batch_size=4, n=16):
    train = DataLoader(blocks_dataset(n, seed), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    val = DataLoader(blocks_dataset(8, seed + 100), batch_size=4)
    return train, val


def tiny_model(seed=0, **options):
    torch.manual_seed(seed)
    options.setdefault("width", 8)
    return build_model("fcn8s", NUM_CLASSES, **options)


# fp32: these tests are about the loop, and the precision policy would choose bf16 on a CPU
# with native bf16, whose kernels pick algorithms per call and break bit-exact comparisons.
FAST = dict(device="cpu", progress=False, amp=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_loss_decreases_on_a_tiny_overfit_task():
    train, val = loaders()
    history = fit(tiny_model(), train, val, epochs=25, lr=1e-2, val_every=5, **FAST)
    assert isinstance(history, History) and history.stopped_by == "epochs"
    assert len(history.step_loss) == 25 * 4 and len(history.epoch_loss) == 25 == history.epochs
    assert np.mean(history.epoch_loss[-3:]) < 0.5 * np.mean(history.epoch_loss[:3])
    assert history.val_miou[-1] > history.val_miou[0]
    assert history.images_seen == 25 * 16 and history.images_per_s > 0


def test_poly_schedule_over_the_planned_steps():
    train, _ = loaders()
    history = fit(tiny_model(), train, epochs=3, lr=0.01, optimizer="sgd", **FAST)
    total = 3 * len(train)
    expected = [0.01 * (1 - k / total) ** 0.9 for k in range(total)]
    np.testing.assert_allclose(history.step_lr, expected, rtol=1e-12)


def test_time_budget_stops_training():
    train, _ = loaders()
    history = fit(tiny_model(), train, time_budget_s=0.5, **FAST)
    assert history.stopped_by == "time" and history.steps >= 1
    assert history.step_lr[0] <= 1e-3   # poly schedule on elapsed time: starts at the base rate


# -- resume -----------------------------------------------------------------------------
@pytest.mark.parametrize("interrupt_step", [6, 8])   # inside an epoch, and at an epoch's last step
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, interrupt_step):
    options = dict(epochs=4, lr=1e-2, keep="last", **FAST)

    torch.manual_seed(123)
    train, val = loaders(seed=1)
    reference_model = tiny_model(seed=1)
    reference = fit(reference_model, train, val, **options)

    torch.manual_seed(123)
    train, val = loaders(seed=1)
    ckpt = tmp_path / "run.pt"
    first = fit(tiny_model(seed=1), train, val, checkpoint=ckpt, callbacks=[InterruptAt(interrupt_step)], **options)
    assert first.stopped_by == "interrupt" and first.steps == interrupt_step

    # A fresh process would build a new model and loader: different weights, different RNG.
    torch.manual_seed(999)
    train, val = loaders(seed=1)
    resumed_model = tiny_model(seed=7)
    resumed = fit(resumed_model, train, val, checkpoint=ckpt, resume=True, **options)

    for (name, a), b in zip(reference_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.step_loss == reference.step_loss
    assert resumed.val_miou == reference.val_miou and resumed.steps == reference.steps == 16


def test_resume_from_an_epoch_end_checkpoint_can_train_further(tmp_path):
    train, val = loaders()
    ckpt = tmp_path / "run.pt"
    fit(tiny_model(), train, val, epochs=2, checkpoint=ckpt, **FAST)
    state = load_checkpoint(ckpt)
    assert state["trainer"]["epoch"] == 2 and state["trainer"]["step"] == 8
    more = fit(tiny_model(seed=3), train, val, epochs=3, checkpoint=ckpt, resume=True, **FAST)
    assert more.epochs == 3 and more.steps == 12 and len(more.epoch_loss) == 3


def test_resume_auto_starts_afresh_without_a_checkpoint(tmp_path):
    train, _ = loaders()
    history = fit(tiny_model(), train, epochs=1, checkpoint=tmp_path / "new.pt", resume="auto", **FAST)
    assert history.steps == 4 and (tmp_path / "new.pt").exists()


def test_keyboard_interrupt_keeps_the_best_weights(tmp_path):
    train, val = loaders()
    snapshots = {}

    def remember(trainer, event):
        if event == "validation":
            snapshots[trainer.step] = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
        if event == "step" and trainer.step == 4 * 6 + 2:
            raise KeyboardInterrupt

    model = tiny_model()
    history = fit(model, train, val, epochs=50, lr=3e-3, checkpoint=tmp_path / "run.pt", callbacks=[remember], **FAST)
    assert history.stopped_by == "interrupt" and len(history.val_miou) == 6
    best_step = history.val_step[int(np.nanargmax(history.val_miou))]
    assert history.best_step == best_step and history.best_miou == max(history.val_miou)
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshots[best_step][name]), name
    saved_best = load_checkpoint(tmp_path / "run.best.pt")
    assert saved_best["step"] == best_step and saved_best["metrics"]["miou"] == history.best_miou
    for name, value in saved_best["model"].items():
        assert torch.equal(value, snapshots[best_step][name]), name
    # The resumable checkpoint holds where training was, not the best weights.
    latest = load_checkpoint(tmp_path / "run.pt")
    assert latest["trainer"]["step"] == 26 and latest["trainer"]["batch_in_epoch"] == 2


def test_callback_can_stop_training():
    train, _ = loaders()
    history = fit(tiny_model(), train, epochs=5, callbacks=[lambda t, e: t.stop() if t.step == 3 else None], **FAST)
    assert history.stopped_by == "callback" and history.steps == 3


# -- evaluate -------------------------------------------------------------------------------
def test_evaluate_equals_a_manual_loop_and_restores_the_mode():
    _, val = loaders()
    model = tiny_model()
    fit(model, loaders()[0], epochs=2, **FAST)
    model.train()
    cm = evaluate(model, val, NUM_CLASSES, "cpu")
    assert model.training
    manual = ConfusionMatrix(NUM_CLASSES)
    model.eval()
    with torch.no_grad():
        for images, labels in val:
            manual.update(model(images).argmax(1), labels)
    np.testing.assert_array_equal(cm.matrix, manual.matrix)
    assert cm.total == 8 * (SIZE - 1) * SIZE   # the void row is not counted


class WithAux(nn.Module):
    """A model with an auxiliary output in training, like Gated-SCNN's edge map."""

    def __init__(self):
        super().__init__()
        self.net = tiny_model()
        self.num_classes = NUM_CLASSES

    def forward(self, x):
        logits = self.net(x)
        if not self.training:
            return logits
        logits = logits["out"]
        return {"out": logits, "aux": logits.mean(1, keepdim=True)}


def test_custom_loss_receives_auxiliary_outputs():
    seen = []

    def loss(output, labels):
        logits, aux = output["out"], output["aux"]
        seen.append(aux.shape)
        return nn.functional.cross_entropy(logits, labels, ignore_index=255) + 0.0 * aux.mean()

    train, val = loaders()
    history = fit(WithAux(), train, val, epochs=1, loss=loss, **FAST)
    assert len(seen) == 4 and seen[0] == (4, 1, SIZE, SIZE)
    assert len(history.val_miou) == 1 and not math.isnan(history.val_miou[0])


def test_amp_follows_the_precision_policy_on_a_cpu_without_native_bf16(monkeypatch):
    from course_utils import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    train, _ = loaders()
    trainer = Trainer(tiny_model(), train, None, training.TrainConfig(epochs=1).validate(), device="cpu")
    assert not trainer.precision.enabled and trainer.scaler is None and trainer.precision.name == "fp32"
    with pytest.raises(ValueError, match="amp=True needs a CPU with native bf16"):
        Trainer(tiny_model(), train, None, training.TrainConfig(epochs=1, amp=True).validate(), device="cpu")


# -- checkpoints -------------------------------------------------------------------------------
def test_checkpoint_roundtrip_hash_and_model_rebuild(tmp_path):
    model = tiny_model().eval()
    path = tmp_path / "sub" / "m.pt"
    digest = save_checkpoint(path, model, metrics={"miou": 0.5})
    assert digest == sha256_file(path)
    state = load_checkpoint(path, expected_sha256=digest.upper())
    assert state["metrics"] == {"miou": 0.5} and state["model_config"]["name"] == "fcn8s"
    rebuilt = load_model(path, expected_sha256=digest).eval()
    x = torch.rand(1, 3, 40, 50)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_hash_mismatch_raises_naming_the_file(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_model())
    with pytest.raises(ValueError, match="m.pt"):
        load_checkpoint(path, expected_sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_loading_never_runs_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Exploit()}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(path)


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_atomic_write_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    good = save_checkpoint(path, tiny_model(), tag="old")
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")   # some bytes reach the temp file...
        raise OSError("disk full")                  # ...then the write fails

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, tiny_model(seed=5), tag="new")
    monkeypatch.setattr(torch, "save", real_save)
    assert sha256_file(path) == good and load_checkpoint(path)["tag"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]   # no temp file left behind


# -- bad input ------------------------------------------------------------------------------------
def _loader(images, labels):
    return DataLoader(TensorDataset(images, labels), batch_size=2)


@pytest.mark.parametrize("images, labels, match", [
    (torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8), torch.zeros(2, 16, 16, dtype=torch.long),
     "floating point"),
    (torch.rand(2, 3, 16, 16), torch.zeros(2, 16, 16), "integer"),
    (torch.rand(2, 3, 16, 16), torch.zeros(2, 1, 16, 16, dtype=torch.long), r"\(N, H, W\)"),
    (torch.rand(2, 3, 16, 16), torch.zeros(2, 16, 15, dtype=torch.long), "disagree"),
    (torch.rand(2, 16, 16), torch.zeros(2, 16, 16, dtype=torch.long), r"\(N, C, H, W\)"),
    (torch.rand(2, 3, 16, 16), torch.full((2, 16, 16), 3, dtype=torch.long), r"labels must be in \[0, 2\] or 255 \(ignored\), found 3"),
])
def test_fit_and_evaluate_refuse_bad_batches(images, labels, match):
    loader = _loader(images, labels)
    with pytest.raises(ValueError, match=match):
        fit(tiny_model(), loader, epochs=1, **FAST)
    if "found 3" not in match:
        with pytest.raises(ValueError, match=match):
            evaluate(tiny_model(), loader, NUM_CLASSES, "cpu")
    else:
        with pytest.raises(ValueError, match=r"target must be in \[0, 2\] or 255 \(ignored\), found 3"):
            evaluate(tiny_model(), loader, NUM_CLASSES, "cpu")


@pytest.mark.parametrize("options, match", [
    ({}, "epochs"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": 1, "optimizer": "adam"}, "optimizer"),
    ({"epochs": 1, "lr": -1}, "lr"),
    ({"epochs": 1, "learning_rate": 0.1}, "unknown option"),
    ({"epochs": 1, "resume": True}, "checkpoint"),
    ({"epochs": 1, "keep": "first"}, "keep"),
])
def test_fit_refuses_bad_options(options, match):
    train, _ = loaders()
    with pytest.raises(ValueError, match=match):
        fit(tiny_model(), train, **FAST, **options)


def test_resume_without_a_checkpoint_file_is_an_error(tmp_path):
    train, _ = loaders()
    with pytest.raises(ValueError, match="does not exist"):
        fit(tiny_model(), train, epochs=1, checkpoint=tmp_path / "none.pt", resume=True, **FAST)


def test_resume_refuses_a_weights_only_file(tmp_path):
    train, _ = loaders()
    save_checkpoint(tmp_path / "w.pt", tiny_model())
    with pytest.raises(ValueError, match="not a resumable"):
        fit(tiny_model(), train, epochs=1, checkpoint=tmp_path / "w.pt", resume=True, **FAST)


def test_resume_is_exact_with_make_loader_and_worker_processes(tmp_path):
    def run(callbacks=(), resume=False, model_seed=1):
        torch.manual_seed(123)
        train = training.make_loader(blocks_dataset(16, 1), 4, shuffle=True, device="cpu", num_workers=2, seed=3)
        model = tiny_model(seed=model_seed)
        history = fit(model, train, epochs=3, lr=1e-2, keep="last", checkpoint=tmp_path / "w.pt",
                      callbacks=callbacks, resume=resume, **FAST)
        return model, history

    reference, ref_history = run()
    run(callbacks=[InterruptAt(5)])
    resumed, history = run(resume=True, model_seed=7)
    assert history.step_loss == ref_history.step_loss
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_distributed_code_paths_in_a_one_process_group(tmp_path):
    # The torchrun trainer (a later issue) runs fit under torch.distributed with a DDP
    # model; a one-process gloo group exercises those paths here: gathered random states,
    # the agreed time budget, the all-reduced validation matrix, unwrapped checkpoints.
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        train, val = loaders()
        model = nn.parallel.DistributedDataParallel(tiny_model())
        history = fit(model, train, val, epochs=2, time_budget_s=60, checkpoint=tmp_path / "d.pt", **FAST)
        assert history.stopped_by == "epochs" and len(history.val_miou) == 2
        state = load_checkpoint(tmp_path / "d.pt")
        assert not any(k.startswith("module.") for k in state["model"]) and len(state["rng"]) == 1
        more = fit(model, train, val, epochs=3, checkpoint=tmp_path / "d.pt", resume=True, **FAST)
        assert more.steps == 12
    finally:
        dist.destroy_process_group()


def test_checkpoint_gets_ordinary_file_permissions(tmp_path):
    import os
    import stat

    from course_utils.training import save_checkpoint

    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, step=1)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_progress_bar_honours_tqdm_disable(monkeypatch):
    from course_utils.training.progress import NoBar, progress_bar

    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert isinstance(progress_bar(True, 10, 0), NoBar)
    monkeypatch.setenv("TQDM_DISABLE", "0")
    bar = progress_bar(True, 10, 0)
    assert not isinstance(bar, NoBar)
    bar.close()


def test_predict_is_the_eval_mode_argmax_in_any_batch_size_and_restores_the_mode():
    from course_utils.training import predict
    torch.manual_seed(0)
    model = build_model("fcn8s", 4, width=8).train()
    images = torch.rand(5, 3, 24, 20)
    with torch.no_grad():
        expected = model.eval()(images).argmax(1).numpy()
    model.train()
    for batch_size in (1, 2, 5, 8):
        got = predict(model, images, batch_size=batch_size)
        assert got.dtype == np.int64 and np.array_equal(got, expected), batch_size
    assert model.training


class _ThreadRecorder(torch.utils.data.Dataset):
    def __init__(self):
        self.seen = []

    def __len__(self):
        return 6

    def __getitem__(self, i):
        self.seen.append(torch.get_num_threads())
        return torch.full((3, 4, 4), float(i)), torch.zeros(4, 4, dtype=torch.long)


def test_batches_are_built_with_one_thread_and_the_thread_count_comes_back():
    from course_utils.training.batches import batches
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = _ThreadRecorder()
        def loader():
            return training.make_loader(data, 2, shuffle=True, device="cpu", seed=3)
        got = [b[0][:, 0, 0, 0].tolist() for b in batches(loader())]
        want = [b[0][:, 0, 0, 0].tolist() for b in loader()]     # same shuffle, same batches
        assert got == want and len(got) == 3
        assert data.seen[:6] == [1] * 6 and data.seen[6:] == [2] * 6
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# -- random states across machines ---------------------------------------------------------------
def four_gpu_checkpoint(path, tmp_path, interrupt_step=6):
    """A checkpoint interrupted at ``interrupt_step``, edited as if written by rank 0 of a 4-GPU
    run: four ranks' states, each with a CUDA generator state (the old all-GPUs list in one)."""
    torch.manual_seed(123)
    train, val = loaders(seed=1)
    fit(tiny_model(seed=1), train, val, epochs=4, lr=1e-2, keep="last", checkpoint=path,
        callbacks=[InterruptAt(interrupt_step)], **FAST)
    state = load_checkpoint(path)
    fake_cuda = torch.arange(16, dtype=torch.uint8)
    for key in ("epoch_start", "now"):
        state["rng"][0][key]["cuda"] = fake_cuda
    state["rng"] = [state["rng"][0]] + [{k: dict(v, cuda=fake_cuda + r) for k, v in state["rng"][0].items()}
                                        for r in (1, 2, 3)]
    save_checkpoint(path, **state)
    return fake_cuda


def test_a_four_gpu_checkpoint_resumes_exactly_on_the_cpu(tmp_path):
    options = dict(epochs=4, lr=1e-2, keep="last", **FAST)
    torch.manual_seed(123)
    train, val = loaders(seed=1)
    reference_model = tiny_model(seed=1)
    reference = fit(reference_model, train, val, **options)

    ckpt = tmp_path / "run.pt"
    four_gpu_checkpoint(ckpt, tmp_path)
    assert len(load_checkpoint(ckpt)["rng"]) == 4
    train, val = loaders(seed=1)
    resumed_model = tiny_model(seed=7)
    resumed = fit(resumed_model, train, val, checkpoint=ckpt, resume=True, **options)
    for (name, a), b in zip(reference_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.step_loss == reference.step_loss


def test_only_the_current_gpus_random_state_is_restored(monkeypatch):
    from course_utils.training import rng

    saved = rng.rng_state(None)
    mine = torch.full((16,), 7, dtype=torch.uint8)
    saved["cuda"] = mine
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append((state, device)))
    rng.set_rng_state(rng.rng_from_plain(rng.rng_to_plain(saved)))
    [(state, device)] = calls
    assert torch.equal(state, mine) and device == 1


def test_a_state_holds_the_current_gpus_generator_only(monkeypatch):
    from course_utils.training import rng

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: torch.full((4,), device, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's state was read"))
    assert torch.equal(rng.rng_state(None)["cuda"], torch.full((4,), 2, dtype=torch.uint8))


# -- torch.compile ---------------------------------------------------------------------------------
def test_compile_failures_are_one_clear_sentence(monkeypatch):
    import torch._dynamo.exc as dynamo_exc

    train, _ = loaders()

    def eager_raises(model, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", eager_raises)
    with pytest.raises(RuntimeError, match="torch.compile could not compile FCN .*train without compile=True"):
        fit(tiny_model(), train, epochs=1, compile=True, **FAST)

    class LazilyFailing(nn.Module):       # what a compiled module does: fail at the first call
        def __init__(self, model):
            super().__init__()
            self._orig_mod = model

        def forward(self, x):
            raise dynamo_exc.InternalTorchDynamoError("backend exploded")

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: LazilyFailing(model))
    with pytest.raises(RuntimeError, match="torch.compile could not compile FCN .*backend exploded"):
        fit(tiny_model(), train, epochs=1, compile=True, **FAST)

    # Inductor's generated code asserts its kernels' strides; it lives in inductor's cache folder.
    generated = {}
    exec(compile("def call(x):\n    raise AssertionError('expected size 9==9, stride 1==64 at dim=1')\n",
                 "/tmp/torchinductor_user/xy/cxyz.py", "exec"), generated)

    class GeneratedCodeFails(LazilyFailing):
        def forward(self, x):
            return generated["call"](x)

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: GeneratedCodeFails(model))
    with pytest.raises(RuntimeError, match="torch.compile could not compile FCN .*stride 1==64"):
        fit(tiny_model(), train, epochs=1, compile=True, **FAST)


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   AssertionError("an assert in the model's own code"),
                                   RuntimeError("a kernel failed on the device")])
def test_a_first_step_error_that_is_not_the_compilers_keeps_its_own_message(monkeypatch, error):
    class FailsOnTheDevice(nn.Module):      # compiled, but the failure is the model's or the device's
        def __init__(self, model):
            super().__init__()
            self._orig_mod = model

        def forward(self, x):
            raise error

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: FailsOnTheDevice(model))
    train, _ = loaders()
    with pytest.raises(type(error)) as caught:
        fit(tiny_model(), train, epochs=1, compile=True, **FAST)
    assert "could not compile" not in str(caught.value)


def test_compile_trains_the_same_parameters(monkeypatch):
    compiled = []

    class Compiled(nn.Module):
        def __init__(self, model):
            super().__init__()
            self._orig_mod = model

        def forward(self, x):
            compiled.append(x.shape)
            return self._orig_mod(x)

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: Compiled(model))
    train, val = loaders()
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    history = fit(model, train, val, epochs=1, compile=True, **FAST)
    assert len(compiled) == history.steps == 4     # training ran through the compiled module
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_deterministic_algorithms_are_on_during_fit_and_restored_after():
    seen = []
    train, _ = loaders()
    before = torch.are_deterministic_algorithms_enabled()
    fit(tiny_model(), train, epochs=1, deterministic=True,
        callbacks=[lambda t, e: seen.append(torch.are_deterministic_algorithms_enabled())], **FAST)
    assert seen and all(seen)
    assert torch.are_deterministic_algorithms_enabled() == before
    with pytest.raises(ValueError, match="deterministic"):
        fit(tiny_model(), train, epochs=1, deterministic="yes", **FAST)
