# CrossModel — `make help` lists the targets. Everything runs from the one venv in .venv.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PACKAGES := libs/proto libs/common libs/protocols \
	services/edge services/auth services/router services/billing services/usage \
	tools/simulator tools/devstack tools/cli
LOCKS := requirements/main.txt requirements/dev.txt

.DEFAULT_GOAL := help
.PHONY: help setup run test unit integration lint fmt proto proto-check lock bench chart clean browser

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: $(LOCKS) $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q --disable-pip-version-check uv==0.13.9
	$(UV) pip sync -q --python $(PY) $(LOCKS)
	$(UV) pip install -q --python $(PY) --no-deps --no-build-isolation $(foreach p,$(PACKAGES),-e $(p))
	@touch $@

setup: $(VENV)/.installed ## build .venv from the hashed lock files (run by every other target)

run: setup ## start the whole system locally (broker, Postgres, Redis, five services, simulator)
	$(PY) -m crossmodel_devstack run

test: setup proto-check lint browser ## everything CI checks: stubs, lint, then every unit and integration test
	$(PY) -m pytest -q

unit: setup ## unit tests of every library and service (no servers needed)
	$(PY) -m pytest -q libs services tools

integration: setup browser ## the whole system through the official SDKs, on real PostgreSQL, Redis and broker
	$(PY) -m pytest -q tests/integration

browser: ## Chromium for the console's browser tests (Debian package `chromium`; installed when root)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "The console's browser tests need Chromium: install the Debian package 'chromium' (sudo apt-get install chromium)." >&2; \
	    exit 1; \
	  fi; }

lint: setup ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: setup ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

proto: setup ## regenerate libs/proto from proto/
	$(PY) scripts/genproto.py

proto-check: setup ## fail when libs/proto is stale against proto/
	$(PY) scripts/genproto.py --check

lock: ## re-resolve requirements/*.txt from requirements/*.in (needs uv in .venv)
	cd requirements && ../$(UV) pip compile -q --python-version 3.11 --generate-hashes main.in -o main.txt
	cd requirements && ../$(UV) pip compile -q --python-version 3.11 --generate-hashes dev.in -o dev.txt

bench: setup ## added latency and throughput of the gateway against the direct upstream
	$(PY) -m crossmodel_devstack bench

chart: setup ## render and validate the Helm chart offline
	$(PY) -m pytest -q deploy

clean: ## remove the venv and local state
	rm -rf $(VENV) .crossmodel .pytest_cache .mypy_cache .ruff_cache
