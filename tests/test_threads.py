"""course_utils.threads: the OpenMP waiting settings, set only where the user chose nothing."""
import os
import subprocess
import sys

from course_utils.threads import OPENMP_WAITING, configure_openmp_waiting


def test_fills_in_what_is_unset_and_keeps_what_the_user_set():
    env = {"KMP_BLOCKTIME": "200"}
    assert configure_openmp_waiting(env) == {"GOMP_SPINCOUNT": OPENMP_WAITING["GOMP_SPINCOUNT"]}
    assert env == {"KMP_BLOCKTIME": "200", "GOMP_SPINCOUNT": "1000"}


def test_an_explicit_wait_policy_wins():
    # libgomp ignores GOMP_SPINCOUNT under OMP_WAIT_POLICY=PASSIVE/ACTIVE; adding it would mislead.
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert configure_openmp_waiting(env) == {}
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_notebook_setup_sets_them_before_torch_is_imported():
    code = ("import sys; from course_utils.notebook import setup; assert 'torch' not in sys.modules; "
            "import os; setup(); print(os.environ['GOMP_SPINCOUNT'], os.environ['KMP_BLOCKTIME'])")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1000", "0"]


def test_the_makefile_exports_the_same_settings():
    # make's commands start processes before any Python runs, so the Makefile states the
    # values again; they must be course_utils.threads' values.
    from pathlib import Path
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    exported = dict(line.removeprefix("export ").split(" := ") for line in makefile.splitlines()
                    if line.startswith("export ") and " := " in line)
    assert {k: exported.get(k) for k in OPENMP_WAITING} == OPENMP_WAITING
    assert "OMP_WAIT_POLICY" not in exported
