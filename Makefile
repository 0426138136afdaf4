# The project's one entry point. `make run` and `make test` install everything they need
# into .venv first (torch pinned before anything else: an unpinned torch pulls a CUDA build).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps run test test-slow bench clean

# Debian packages the project uses (data today; the C toolchain and QEMU arrive with export).
# Installed when missing, where apt-get is available and we are root; skipped otherwise.
DEBS := dataset-fashion-mnist
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

# The main job. Until the search lands it shows the fast RNNPool operator against the plain one.
run: install
	$(PY) benchmarks/bench_rnnpool.py

test: install
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
