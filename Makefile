# Each target installs what it needs into .venv first, so on a fresh machine
# `make serve` and `make test` are the only two commands to know.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: serve test lint bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

serve: $(INSTALLED)  ## run the gateway on the embedded default config (127.0.0.1:8080)
	$(BIN)/seawall serve

test: $(INSTALLED)  ## run the test suite
	$(BIN)/pytest

lint: $(INSTALLED)  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(INSTALLED)  ## seawall vs. upstream vs. LiteLLM proxy (see bench/README.md)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
