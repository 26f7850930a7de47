# The two commands a newcomer needs: `make lab` and `make test`. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))

# One set of execution settings for nbval (make test), the stored references (make refs)
# and the HTML course (make course), so the three agree on what a notebook prints.
# TQDM_DISABLE: progress bars are timing-dependent; tqdm reads TQDM_* as defaults.
export PYTHONHASHSEED := 0
export TQDM_DISABLE := 1
export MPLBACKEND := module://matplotlib_inline.backend_inline
# How PyTorch's OpenMP threads wait between operations: spin briefly, then sleep. Sleeping
# at once (OMP_WAIT_POLICY=PASSIVE) halved training speed here; spinning for ever collapses
# it when two processes train. Measurements and the why: course_utils/threads.py.
export GOMP_SPINCOUNT := 1000
export KMP_BLOCKTIME := 0

# Localhost only, token authentication kept, --allow-root only when we are root. The
# server's root is the repository (so /api/contents/notebooks exists); it opens on 00.
# LAB_EXTRA: more flags, e.g. LAB_EXTRA="--no-browser --ServerApp.port=8890".
LAB_FLAGS := --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=. \
	--ServerApp.default_url=/lab/tree/notebooks/00_welcome.ipynb \
	$(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_EXTRA)

# The notebooks' stored outputs (and the data set's reference hashes) are computed on the
# CPU, in fp32, with AVX2 kernels. nbval (make test), the references (make refs) and the HTML
# course (make course) compute them the same way on any machine: a GPU, a CPU with native
# bf16, or one with AVX-512, whose kernels (NumPy's, PyTorch's ATen and oneDNN's, MKL's) round
# differently in the last bits, enough to change a training run's printed numbers. These are
# the libraries' documented switches; run a notebook's GPU plan on purpose in `make lab`.
test test-quick refs course: export COURSE_DEVICE := cpu
test test-quick refs course: export COURSE_AMP := 0
test test-quick refs course: export ATEN_CPU_CAPABILITY := avx2
test test-quick refs course: export ONEDNN_MAX_CPU_ISA := AVX2
test test-quick refs course: export MKL_ENABLE_INSTRUCTIONS := AVX2
# NumPy names its AVX-512 targets by version; ask the installed one (when the recipe runs).
test test-quick refs course: export NPY_DISABLE_CPU_FEATURES = $(shell $(BIN)/python -c "from numpy._core \
	import _multiarray_umath as m; print(' '.join(f for f in m.__cpu_dispatch__ if f[:6] in ('AVX512', 'X86_V4')))")

.PHONY: lab test test-quick refs course student bench demos gpu-check install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps make both commands quick when nothing changed; editing pyproject.toml reinstalls.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	touch $@ $(VENV)/.installed

# The demo deck's extra (Voilà); `make demos` installs it on first use.
$(VENV)/.installed-deck: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[deck]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

lab: $(VENV)/.installed
	$(BIN)/jupyter lab $(LAB_FLAGS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=900

# The contributors' quick loop: the unit tests only (no notebooks, no browser, no torchrun,
# no torch.compile), a few minutes on two cores. CI runs `make test`.
test-quick: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests -m "not slow and not browser"

refs: $(VENV)/.installed-test
	$(BIN)/python tools/run_notebooks.py --inplace $(NOTEBOOKS)

course: $(VENV)/.installed-test
	$(BIN)/python tools/build_course.py --out build/course $(NOTEBOOKS)

# Student copies: solution cells emptied, outputs cleared (tools/make_student.py).
student: $(VENV)/.installed-test
	$(BIN)/python tools/make_student.py --out build/student $(NOTEBOOKS)

# The demo deck for the lecture hall: deck/demos.ipynb in Voilà, code hidden, every demo
# live; localhost only with a token (tools/deck.py). DECK_EXTRA: more Voilà flags, e.g.
# DECK_EXTRA="--port=8867 --no-browser".
demos: $(VENV)/.installed-deck
	$(BIN)/python tools/deck.py $(DECK_EXTRA)

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run.py

# Does the course run, and run well, on this machine's GPU? Under ten minutes; one JSON file,
# build/gpu_check.json (tools/gpu_check.py; on a CPU it runs what it can in a minute or two).
gpu-check: $(VENV)/.installed
	$(BIN)/python tools/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf build .pytest_cache .hypothesis
