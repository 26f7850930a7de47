import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# CI runs on a shared 2-core machine: example timings vary too much for deadlines, and
# a fixed derandomised profile makes a CI failure reproducible locally.
settings.register_profile("ci", deadline=None, derandomize=True, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run faster on one thread: on a shared 2-core machine a descheduled
    OpenMP thread stalls every op for a time slice. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def precision_policy_as_written(monkeypatch):
    """The Makefile pins COURSE_AMP=0 so that nbval's notebooks compute in fp32 on every CPU;
    the unit tests check the policy itself, so they run without that setting."""
    monkeypatch.delenv("COURSE_AMP", raising=False)
