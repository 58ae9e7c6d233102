# The whole set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make demo` installs what running cnnzoo needs (with plots, for the run's curves); `make test`
# adds the extras and the developer tools on top.
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
# PIP_CONSTRAINT reaches pip's isolated build environments too, which `-c` alone does not.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo test lint typecheck unit docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e '.[plots]'
	touch $(RUNTIME)

$(DEV): $(RUNTIME)
	$(PIP) -e '.[dev]'
	touch $(DEV)

demo: $(RUNTIME)
	$(BIN)/cnnzoo train lenet5 --out runs/demo-lenet5

test: $(DEV) lint typecheck unit

lint: $(DEV)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(DEV)
	$(BIN)/mypy

# Two workers on two cores, one thread each: the processes tests start (forked trainers,
# torchrun ranks) inherit it, and a fork after a multi-threaded OpenMP region can hang the child.
unit: $(DEV)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup -q

docs: $(RUNTIME)
	$(BIN)/python -m cnnzoo.docs README.md

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
