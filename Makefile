# hfrl developer commands. `make demo` and `make test` are the README's two set-up commands: both create
# .venv and install the package with its dependencies on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hfrl-installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist); 2 matches the 2-core machines the suite is sized for.
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-all bench lint format assets clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "hfrl needs Python 3.10+"' || \
		(echo "hfrl needs Python 3.10 or newer; set PYTHON=python3.x" >&2; exit 1)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hfrl demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python scripts/run_benchmarks.py

lint: $(STAMP)
	$(BIN)/ruff check hfrl envs agents scripts tests
	$(BIN)/ruff format --check hfrl envs agents scripts tests

format: $(STAMP)
	$(BIN)/ruff check --fix hfrl envs agents scripts tests
	$(BIN)/ruff format hfrl envs agents scripts tests

assets: $(STAMP)
	$(BIN)/python scripts/make_assets.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
