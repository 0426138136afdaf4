# The project's one entry point. `make run` and `make test` install everything they need
# into .venv first (torch pinned before anything else: an unpinned torch pulls a CUDA build).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps run test test-slow bench clean

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

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	$(PY) -m rnnpool_nas.ops.build
	touch $@

install: $(STAMP) system-deps

# The main job: a real search on Fashion-MNIST under a 16 KB RAM budget for the exported C
# runtime's arena (measured 17 min on 2 cores with another job running; 32 candidates took 5.7
# min). Results land in runs/fashion-mnist-16k/ (a second `make run` resumes or reports it).
RUN_DIR ?= runs/fashion-mnist-16k
run: install
	@if [ -d $(RUN_DIR) ]; then resume=--resume; fi; \
	$(VENV)/bin/rnnpool-nas search --space fashion-mnist --ram-budget 16KB --convention runtime --trials 56 \
	  --epochs 3 --limit 20000 --workers 2 --out $(RUN_DIR) $$resume

# The default suite, then the slow tests (a SIGKILLed search resumed; a separate Ray head; the
# report and run index in headless Chromium).
test: install
	$(PY) -m pytest
	$(PY) -m pytest -m slow

test-slow: install
	$(PY) -m pytest -m slow

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
