# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# No telemetry. Tests also set the hub offline before Python starts (a missing model fails at once);
# the demo does not, so a connected machine downloads the real CLIP weights (an offline one falls back
# to the stand-in within a second).
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: venv demo test lint typecheck pytest test-slow bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pytti demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest

test: lint typecheck pytest

test-slow: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m slow; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

bench: $(STAMP)
	$(OFFLINE) $(BIN)/python bench/overhead.py

clean:
	rm -rf renders .pytest_cache .mypy_cache .ruff_cache
