# aistudios-export: `make demo` runs one export on the embedded local stack; `make test` runs every test.
# Both set up a .venv with pinned dependencies on Python 3.13 (the Lambda runtime) first.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13: a working python3.13 on PATH first, then pyenv's installed versions.
PYTHON313 := $(shell \
	if python3.13 -c 'import sys' >/dev/null 2>&1; then command -v python3.13; \
	else for p in $$( (pyenv root 2>/dev/null || echo $$HOME/.pyenv) )/versions/3.13.*/bin/python3.13; do \
		[ -x "$$p" ] && "$$p" -c 'import sys' >/dev/null 2>&1 && echo "$$p"; done | sort -V | tail -n 1; fi)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov pins its own boto3 & co: it lives in a virtualenv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# The CloudFormation that SAM makes of template.yaml, which cfn-lint's serverless rules and
# checkov read (with checks/skips.yaml written into its Metadata).
TRANSFORMED := .build/transformed.json
# sam build and the tests find python3.13 on PATH.
export PATH := $(CURDIR)/$(BIN):$(dir $(PYTHON313)):$(PATH)
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help demo up test lint typecheck validate unit integration bench build clean python iam-table

help:
	@echo "make demo   - run one export end to end on the embedded local stack"
	@echo "make up     - serve the local stack for the operator commands (AWS_ENDPOINT_URL)"
	@echo "make test   - run every test (lint, types, template checks, unit, integration)"
	@echo "make iam-table - rewrite tests/iam_expected.yaml after a deliberate change of permissions"

python:
	@if [ -z "$(PYTHON313)" ]; then \
		echo "error: Python 3.13 is required (the Lambda runtime) but was not found." >&2; \
		echo "       Put python3.13 on PATH, or install it with pyenv: pyenv install 3.13" >&2; \
		exit 1; fi

$(STAMP): requirements-dev.txt constraints.txt layers/common/requirements.txt \
		functions/api/requirements.txt pyproject.toml | python
	@echo "Setting up $(VENV) with $(PYTHON313) and the pinned dependencies (moto, aws-sam-cli, ...;"
	@echo "about 500 MB): about 2 minutes the first time, nothing after that."
	"$(PYTHON313)" -m venv $(VENV)
	$(BIN)/python -m pip install -qq --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install -qq --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt constraints-checkov.txt | python
	@echo "Setting up $(CHECKOV_VENV) for checkov (it pins its own boto3): about a minute the first time."
	"$(PYTHON313)" -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -qq --disable-pip-version-check \
		-r requirements-checkov.txt -c constraints-checkov.txt
	touch $(CHECKOV_STAMP)

demo: $(STAMP)
	@echo "One export through the real state machine and functions, on moto and a loopback AI Studios simulator:"
	$(BIN)/aistudios-export local --project-id 65fa6b07dca2e367461a2925 --poll-seconds 1

up: $(STAMP)
	$(BIN)/aistudios-export local up

test: $(STAMP) $(CHECKOV_STAMP) lint typecheck validate
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

validate: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region $(AWS_DEFAULT_REGION)
	$(BIN)/python -m tools.transform --skips checks/skips.yaml --output $(TRANSFORMED)
	@# SAM inlines each state machine as one Fn::Join of its lines; cfn-lint checks such a join
	@# recursively and passes Python's default depth of 1000 with the export machine's ~1,000 lines.
	$(BIN)/python -c 'import sys; sys.setrecursionlimit(20000); from cfnlint.runner import main; sys.exit(main())' \
		--append-rules cfn_lint_serverless.rules -- $(TRANSFORMED)
	@# Offline: no platform mappings or policies to download, no update check.
	BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov \
		--file $(TRANSFORMED) --framework cloudformation --external-checks-dir checks/checkov \
		--skip-download --compact --quiet

# The reviewed table of every role's permissions; commit its diff with the template's.
iam-table: $(STAMP)
	$(BIN)/python -m tools.iam_table --write

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

# Every benchmark runs and prints its numbers; the target fails if any claim failed.
bench: $(STAMP)
	@status=0; for b in copy copy-speed scale cold wait; do \
		echo "== python -m bench $$b"; $(BIN)/python -m bench $$b || status=1; done; exit $$status

build: $(STAMP)
	$(BIN)/sam build --template template.yaml

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .build .aws-sam .pytest_cache .mypy_cache .ruff_cache
