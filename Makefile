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

.PHONY: lab test refs course student bench demos gpu-check install install-test clean

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
