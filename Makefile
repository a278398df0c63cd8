# Every target sets up .venv from the project's own files when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CLUSTER_STAMP := $(VENV)/.installed-cluster

.PHONY: demo test test-cluster lint typecheck pytest bench stubs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The cluster extras (Ray, Dask: about 30 s to install) only for the cluster tests.
$(CLUSTER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,ray,dask]'
	touch $(CLUSTER_STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

test: $(STAMP) pytest typecheck lint

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test-cluster: $(CLUSTER_STAMP)
	$(BIN)/python -m pytest -q -m cluster

typecheck: $(STAMP)
	$(BIN)/python -m mypy

lint: $(STAMP)
	$(BIN)/ruff check routilux tests examples benchmarks
	$(BIN)/ruff format --check routilux tests examples benchmarks

bench: $(CLUSTER_STAMP)
	$(BIN)/python -m benchmarks --passes 3
	$(BIN)/python -m benchmarks.bench_executors

stubs: $(STAMP)
	$(BIN)/python -m routilux.stubgen examples -o stubs

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .routilux
