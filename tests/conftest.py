import os

from hypothesis import HealthCheck, settings

# CI runs on a shared 2-core machine: example timings vary too much for deadlines, and
# a fixed derandomised profile makes a CI failure reproducible locally.
settings.register_profile("ci", deadline=None, derandomize=True, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
