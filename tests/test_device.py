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
