import pytest
import torch

from course_utils import device as dev


def test_select_device_follows_availability(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if dev._mps_available() else "cpu")
    assert dev.select_device().type == expected
    assert dev.select_device("cpu").type == "cpu"
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert dev.select_device().type == "cpu"


def test_bad_preference():
    with pytest.raises(ValueError, match="prefer must be one of"):
        dev.select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            dev.select_device("cuda")


def test_requirements_and_versions():
    assert dev.unmet_requirements() == []
    versions = dev.library_versions()
    assert set(versions) == set(dev.CORE_LIBRARIES) and "missing" not in versions.values()
    assert dev._version_tuple("2.13.0+cpu") == (2, 13, 0) and dev._version_tuple("8.1") == (8, 1)
    assert dev.device_report(torch.device("cpu"))["device"] == "cpu"


# -- the precision policy, wired through (mocked GPUs: CI has none) ------------------------------
class FakeProps:
    def __init__(self, major, minor):
        self.name, self.total_memory, self.major, self.minor = "Fake GPU", 16 * 2**30, major, minor


def fake_cuda(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: FakeProps(*capability))

    def refuse(*a, **k):
        raise AssertionError("is_bf16_supported counts emulated bf16; the policy must not ask it")

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", refuse)


@pytest.mark.parametrize("capability, name, scaler", [((7, 5), "fp16", True), ((8, 0), "bf16", False),
                                                      ((9, 0), "bf16", False), ((6, 1), "fp32", False)])
def test_device_report_states_the_policys_choice_for_a_gpu(monkeypatch, capability, name, scaler):
    import warnings

    from course_utils.precision import choose_precision

    fake_cuda(monkeypatch, capability)
    info = dev.device_report(torch.device("cuda", 0))
    assert (info["precision"], info["grad_scaler"]) == (name, scaler)
    assert info["compute_capability"] == f"{capability[0]}.{capability[1]}"
    policy = choose_precision("cuda:0")
    assert policy.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # a GradScaler on a machine without CUDA warns and disables itself
        assert (policy.grad_scaler() is not None) == scaler


def test_device_report_on_this_cpu_follows_the_policy():
    from course_utils.precision import choose_precision

    info = dev.device_report(torch.device("cpu"))
    assert info["precision"] == choose_precision("cpu").name and info["grad_scaler"] is False


def forbid_autocast(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("torch.autocast constructed although mixed precision is off")

    monkeypatch.setattr(torch, "autocast", refuse)


def test_mps_and_amp_off_construct_no_autocast(monkeypatch):
    import contextlib

    from course_utils.precision import choose_precision

    forbid_autocast(monkeypatch)
    for policy in (choose_precision("mps"), choose_precision("cpu", amp=False), choose_precision("cuda", amp=False)):
        assert isinstance(policy.autocast(), contextlib.nullcontext) and policy.grad_scaler() is None


def test_fit_evaluate_and_predict_without_mixed_precision_never_touch_autocast(monkeypatch):
    from course_utils import precision
    from course_utils.models import build_model
    from course_utils.training import evaluate, fit, predict

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    forbid_autocast(monkeypatch)
    torch.manual_seed(0)
    images = torch.rand(4, 3, 16, 16)
    labels = torch.randint(0, 3, (4, 16, 16))
    data = list(zip(images.split(2), labels.split(2)))
    model = build_model("fcn8s", 3, width=8)
    for amp in (None, False):
        history = fit(model, data, data, epochs=1, amp=amp, device="cpu", progress=False)
        assert history.steps == 2
        assert evaluate(model, data, 3, "cpu", amp=amp).total == 4 * 16 * 16
        assert predict(model, images, amp=amp).shape == (4, 16, 16)
