# Dargah: `make run` starts the sandbox, `make test` runs the tests. `make help` lists the rest.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Lighthouse and axe-core (npm, pinned by the lock file) for the page checks of `make test`
CHECKS := tools/browser-checks
CHECKS_STAMP := $(CHECKS)/node_modules/.installed

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(CHECKS_STAMP): $(CHECKS)/package.json $(CHECKS)/package-lock.json
	cd $(CHECKS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(CHECKS_STAMP)

.PHONY: help install run test lint typecheck bench docs clean cluster cluster-stop

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create the virtual environment and install Dargah with its test tools

run: $(STAMP) ## Start the sandbox (bus, registry, portal, console, sandbox agencies) on http://127.0.0.1:8000
	$(BIN)/dargah demo

test: $(STAMP) $(CHECKS_STAMP) ## Run the test suite (SQLite, and PostgreSQL when reachable)
	$(BIN)/pytest

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check dargah tests bench

typecheck: $(STAMP) ## mypy --strict on the package
	$(BIN)/mypy

bench: $(STAMP) ## Benchmarks: the bus against nginx on loopback
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "installing nginx-light and wrk (Debian)"; apt-get install -y -qq nginx-light wrk; }
	$(BIN)/python bench/bus_throughput.py

cluster: $(STAMP) ## Three bus nodes behind haproxy on local PostgreSQL, Redis, NATS (CLUSTER_PORT=8080 ...)
	$(BIN)/python scripts/cluster.py start

cluster-stop: ## Stop what make cluster started
	$(BIN)/python scripts/cluster.py stop

docs: $(STAMP) ## Regenerate docs/cli.md from the commands' help
	$(BIN)/python -m dargah.cli.reference > docs/cli.md

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(CHECKS)/node_modules
