"""course_utils.precision on CPU: bf16 only where native, and by default only where measured faster."""
import pytest
import torch

from course_utils import precision


@pytest.fixture
def cpu(monkeypatch):
    """Pretend-CPU: ``set(native=..., speedup=...)``; records whether the probe ran."""
    state = {"probed": 0}

    def configure(native, speedup=None):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)

        def probe():
            state["probed"] += 1
            if speedup is None:
                raise AssertionError("the timed probe must not run on a CPU without native bf16")
            return speedup
        monkeypatch.setattr(precision, "cpu_bf16_speedup", probe)
        return state
    return configure


def test_without_native_bf16_the_policy_is_fp32_and_never_probes(cpu):
    state = cpu(native=False)
    p = precision.choose_precision("cpu")
    assert p.dtype is None and p.name == "fp32" and state["probed"] == 0
    with pytest.raises(ValueError, match="native bf16"):
        precision.choose_precision("cpu", amp=True)


@pytest.mark.parametrize("speedup, expected", [(2.0, torch.bfloat16), (precision.CPU_BF16_MIN_SPEEDUP, torch.bfloat16),
                                               (1.1, None), (0.5, None)])
def test_with_native_bf16_the_probe_decides(cpu, speedup, expected):
    state = cpu(native=True, speedup=speedup)
    p = precision.choose_precision("cpu")
    assert p.dtype is expected and state["probed"] == 1
    assert f"{speedup:.2f}x" in p.reason
    # Asked explicitly, bf16 is given without probing; turned off, fp32.
    assert precision.choose_precision("cpu", amp=True).dtype is torch.bfloat16
    assert precision.choose_precision("cpu", amp=False).dtype is None
    assert state["probed"] == 1


def test_the_real_machine_never_gets_emulated_bf16():
    # Whatever this CPU is, the default never picks bf16 unless it is native here.
    p = precision.choose_precision("cpu")
    assert p.dtype is None or precision.cpu_has_native_bf16()


def test_the_probe_measures_a_ratio():
    ratio = precision.cpu_bf16_speedup(size=8, channels=4, repeat=1)
    assert 0 < ratio < float("inf")


@pytest.mark.parametrize("value, expected", [("0", False), ("1", True), ("auto", None), ("", None)])
def test_course_amp_stands_in_for_amp_none(monkeypatch, value, expected):
    from course_utils import precision

    monkeypatch.setenv("COURSE_AMP", value)
    assert precision.amp_from_environment() is expected
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 2.0)
    chosen = precision.choose_precision("cpu")
    assert chosen.dtype == (None if expected is False else torch.bfloat16)
    assert precision.choose_precision("cpu", amp=False).dtype is None     # an explicit amp wins


def test_a_bad_course_amp_names_the_variable(monkeypatch):
    from course_utils import precision

    monkeypatch.setenv("COURSE_AMP", "fast")
    with pytest.raises(ValueError, match="COURSE_AMP must be 0, 1 or auto"):
        precision.choose_precision("cpu")


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_the_probe_trains_also_when_first_asked_without_autograd(context):
    # An evaluation may be the first to ask the policy (its forward runs without autograd).
    with context():
        ratio = precision.cpu_bf16_speedup.__wrapped__(size=8, channels=4, repeat=1)
    assert 0 < ratio < float("inf")


# -- CUDA GPUs (mocked: CI has none) -------------------------------------------------------------
@pytest.fixture
def gpu(monkeypatch):
    """Pretend CUDA GPU of a given compute capability: ``gpu((major, minor))``."""
    def configure(capability):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

        def refuse(*a, **k):
            raise AssertionError("is_bf16_supported counts emulated bf16; the policy must not ask it")
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", refuse)
    return configure


# Which GPU generation has which tensor cores (NVIDIA's CUDA programming guide): none before
# Volta (7.0), fp16 from Volta and Turing (7.x), bf16 from Ampere (8.x) on.
GENERATIONS = [((3, 7), None, False), ((5, 2), None, False), ((6, 0), None, False), ((6, 1), None, False),
               ((7, 0), torch.float16, True), ((7, 5), torch.float16, True),
               ((8, 0), torch.bfloat16, False), ((8, 6), torch.bfloat16, False), ((9, 0), torch.bfloat16, False)]


@pytest.mark.parametrize("capability, dtype, scaler", GENERATIONS)
def test_cuda_precision_follows_the_tensor_cores(gpu, capability, dtype, scaler):
    gpu(capability)
    p = precision.choose_precision("cuda:0")
    assert (p.device_type, p.dtype, p.use_scaler) == ("cuda", dtype, scaler)
    assert "{}.{}".format(*capability) in p.reason
    assert precision.cuda_has_native_bf16() == (dtype is torch.bfloat16)


@pytest.mark.parametrize("capability", [(6, 1), (6, 0), (5, 2)])
def test_an_old_gpu_gets_fp16_only_when_asked(gpu, capability):
    gpu(capability)
    asked = precision.choose_precision("cuda", amp=True)
    assert (asked.dtype, asked.use_scaler) == (torch.float16, True) and "amp=True" in asked.reason
    assert precision.choose_precision("cuda", amp=False).dtype is None


@pytest.mark.parametrize("capability", [(7, 0), (7, 5), (8, 0), (9, 0)])
def test_a_tensor_core_gpu_turned_off_is_fp32(gpu, capability):
    gpu(capability)
    assert precision.choose_precision("cuda", amp=False).dtype is None
    assert precision.choose_precision("cuda", amp=True) == precision.choose_precision("cuda")


def test_without_cuda_the_capability_is_none(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.cuda_capability() == (0, 0) and not precision.cuda_has_native_bf16()

