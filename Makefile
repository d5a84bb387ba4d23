# Dargah: `make run` starts the sandbox, `make test` runs the tests. `make help` lists the rest.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: help install run test lint typecheck bench docs clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create the virtual environment and install Dargah with its test tools

run: $(STAMP) ## Start the sandbox (bus, registry, portal, console, sandbox agencies) on http://127.0.0.1:8000
	$(BIN)/dargah demo

AXE := .npm-test/node_modules/axe-core/axe.min.js

$(AXE):
	npm install --no-save --no-audit --no-fund --prefix .npm-test axe-core@4.10.2

test: $(STAMP) $(AXE) ## Run the test suite (SQLite, and PostgreSQL when reachable)
	$(BIN)/pytest

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check dargah tests bench

typecheck: $(STAMP) ## mypy --strict on the package
	$(BIN)/mypy

bench: $(STAMP) ## Benchmarks: the bus against nginx on loopback
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "installing nginx-light and wrk (Debian)"; apt-get install -y -qq nginx-light wrk; }
	$(BIN)/python bench/bus_throughput.py

docs: $(STAMP) ## Regenerate docs/cli.md from the commands' help
	$(BIN)/python -m dargah.cli.reference > docs/cli.md

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
