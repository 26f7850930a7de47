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


def test_the_cpu_probe_runs_inside_no_grad():
    # evaluate() asks the policy inside torch.no_grad(); the probe's backward must still run.
    from course_utils import precision

    precision.cpu_bf16_speedup.cache_clear()
    with torch.no_grad():
        assert precision.cpu_bf16_speedup(size=8, channels=4, repeat=1) > 0
    precision.cpu_bf16_speedup.cache_clear()
