# The project's one entry point. `make run` and `make test` install everything they need
# into .venv first (torch pinned before anything else: an unpinned torch pulls a CUDA build).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	$(PY) -m rnnpool_nas.ops.build
	touch $@

install: $(STAMP)

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
