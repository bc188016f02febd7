# Bedrock Batch Classifier — developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda functions run on python3.13; the development environment uses the same version when it can find it.
PYTHON ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO_INPUT ?= ../shared/data/travel_conversations_labeled.xlsx
DEMO_OUT ?= demo-output

.PHONY: help dev demo test lint format bench clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/batch-classifier: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

dev: $(BIN)/batch-classifier ## Create .venv with the package, the CLI and the dev tools

demo: dev ## Set up, then prepare the sample data for Bedrock batch jobs and estimate its cost
	$(BIN)/batch-classifier tasks
	$(BIN)/batch-classifier estimate $(DEMO_INPUT) --task travel
	$(BIN)/batch-classifier prepare $(DEMO_INPUT) --task travel --label-column class --out $(DEMO_OUT)

test: dev ## Run the whole test suite
	$(BIN)/pytest

lint: dev ## ruff (check and format) and mypy on the shared package
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: dev ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: dev ## Benchmarks: throughput and peak memory of prepare and collect against a parse-only floor
	$(BIN)/python tests/bench/bench_pipeline.py

clean: ## Remove the environment and generated files
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
