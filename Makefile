# The project's one entry point. `make run` and `make test` install everything they need
# into .venv first (torch pinned before anything else: an unpinned torch pulls a CUDA build).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps run test test-slow bench clean lock test-latest wheel-smoke

# Debian packages the project uses: the data, chromium for the report's browser test, the
# Cortex-M4 toolchain and QEMU for the C export. Installed when missing, where apt-get is
# available and we are root; skipped otherwise.
DEBS := dataset-fashion-mnist chromium gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
DEB_STAMP := $(VENV)/.debs

system-deps: $(DEB_STAMP)

$(DEB_STAMP): Makefile
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && ! { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; }; then \
	  echo "warning: cannot install$$missing (needs root and apt-get); what needs them is skipped"; exit 0; fi; \
	if [ -n "$$missing" ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing || exit 1; fi; \
	mkdir -p $(VENV) && touch $@

# Exact versions from requirements.lock (torch first, pinned: it is the CPU build on this disk),
# then the package itself without build isolation, so setup.py compiles the FastGRNN kernel
# against the locked torch (about a minute, once per install).
LOCK := requirements.lock
$(STAMP): pyproject.toml $(LOCK) setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -r $(LOCK)
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m rnnpool_nas.ops.build
	touch $@

install: $(STAMP) system-deps

# The main job: a real search on Fashion-MNIST under a 16 KB RAM budget for the exported C
# runtime's arena (candidates scored on a held-out 10% of the training images), then its two most
# accurate finalists retrained from scratch on the whole training set (up to 30 epochs, as many as
# fit 18 minutes at the speed the search measured) and tested once, float and int8, on the test
# set. Results land in runs/fashion-mnist-16k/ (final/ for the finalists); a second `make run`
# resumes whichever step was interrupted.
RUN_DIR ?= runs/fashion-mnist-16k
run: install
	@if [ -d $(RUN_DIR) ]; then resume=--resume; fi; \
	$(VENV)/bin/rnnpool-nas search --space fashion-mnist --ram-budget 16KB --convention runtime --trials 30 \
	  --epochs 2 --limit 12000 --workers 2 --out $(RUN_DIR) $$resume
	$(VENV)/bin/rnnpool-nas finalize $(RUN_DIR) --top 2 --epochs 30 --time-budget 18min --workers 2

# The default suite, then the slow tests (a SIGKILLed search resumed; a separate Ray head; the
# report and run index in headless Chromium).
test: install
	$(PY) -m pytest
	$(PY) -m pytest -m slow

test-slow: install
	$(PY) -m pytest -m slow

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Regenerate requirements.lock from pyproject.toml's ranges (pip-tools, itself locked). Commit the
# result together with the pyproject.toml change that called for it.
lock: $(STAMP)
	$(VENV)/bin/pip-compile --quiet --strip-extras --extra dev --extra dashboard --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml

# The suite against the newest versions pyproject.toml's ranges admit, in a scratch venv: the next
# breaking release of a dependency shows up here before it reaches a user.
LATEST := .venv-latest
test-latest: system-deps
	rm -rf $(LATEST) && $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet torch==2.13.0 'setuptools>=68,<90' wheel
	$(LATEST)/bin/pip install --quiet --upgrade --upgrade-strategy eager --no-build-isolation '.[dev,dashboard]'
	$(LATEST)/bin/pip list --format=freeze | grep -iE '^(optuna|ray|pandas|plotly|numpy|pyarrow)=='
	$(LATEST)/bin/python -m pytest

# The package as a user gets it: build the wheel, install it into a scratch venv with the locked
# dependencies, and run it from an empty folder (spaces and profiles must come from the wheel).
wheel-smoke: $(STAMP)
	bash scripts/wheel_smoke.sh $(PYTHON) $(LOCK)

clean:
	rm -rf $(VENV) $(LATEST) build dist *.egg-info .pytest_cache rnnpool_nas/ops/_fastgrnn_ext*.so
