# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   - create the environment, build the demo corpus, materialize the whole graph
#   make test   - create the environment, install the browser/Postgres test programs, run pytest
#   make lint   - ruff (format + lint) and mypy against its baseline; make test-fast - the suite minus slow tests
# `make ui` opens the Dagster UI on the demo's instance (127.0.0.1 only).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data
export ALIGN_DATA_DIR ?= $(abspath $(DATA))
export DAGSTER_HOME ?= $(abspath $(DATA))/dagster_home

.PHONY: setup demo test test-fast lint ui bench clean-data

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version.split()[0]}"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch==2.13.0 resolves to the local CPU wheel; never let pip pick another torch.
	$(BIN)/pip install --quiet -e '.[dev]'
	# lpips ships the real LPIPS linear weights; its only hard dependency is torchvision,
	# which has no CPU build for torch 2.13 and breaks transformers/diffusers imports.
	$(BIN)/pip install --quiet --no-deps lpips==0.1.4
	touch $(STAMP)

# Only the environment (.venv), for running the CLIs on your own ads.
setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/align-demo --data-dir $(ALIGN_DATA_DIR)

test: $(STAMP)
	bash .ci/install-system-deps.sh
	$(BIN)/pytest

# The suite without the tests that run the pipeline (marked slow): a minute or two, for editing.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow and not system"

# Formatting, lint (ruff: E, F, W, I, B, complexity <= 20, <= 60 statements), types (mypy, per-file
# baseline in .ci/mypy-baseline.json that may only shrink) and Dagster's own check of the definitions.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/python .ci/mypy_gate.py
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg check defs

ui: $(STAMP)
	$(BIN)/align-demo --data-dir $(ALIGN_DATA_DIR) --ui-only
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# `make bench REAL_SIZE=--quick` keeps the real-size benchmark at 1-2 s, 540x960 for everyday use.
REAL_SIZE ?=
bench: $(STAMP)
	$(BIN)/python -m bench.run_all
	$(BIN)/python -m bench.bench_real_size $(REAL_SIZE)
	$(BIN)/python -m bench.bench_partition_scale

clean-data:
	rm -rf $(DATA)
