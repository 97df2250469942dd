# The two commands of the README: `make run` and `make test`. Both install into .venv/.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install testbed lint unit integration test run testbed-up testbed-down bench clean

# The install generates the gRPC stubs from proto/ (recommender/api/build_backend.py).
$(STAMP): pyproject.toml $(wildcard proto/vpafleet/v1/*.proto)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "vpa-fleet needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## install: the package and its dev tools into .venv/ (vpa-fleet lands in .venv/bin)
install: $(STAMP)

## testbed: build (or reuse from ~/.cache/vpa-fleet) the control plane binaries, install Prometheus and Chromium
testbed: install
	bash testbed/build.sh all
	bash testbed/install-prometheus.sh
	bash testbed/install-chromium.sh

## lint: ruff, formatting, mypy --strict on recommender/ and analytics/
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: testbed
	$(BIN)/pytest tests/integration

## test: everything CI runs: install, testbed, gates, unit tests, then integration tests
test: install testbed lint
	$(BIN)/pytest tests/unit
	$(BIN)/pytest tests/integration

## run: install, bring the local testbed up (demo workloads, history, VPAs), run the recommender
run: install testbed
	@[ -f .testbed/state.json ] || $(BIN)/python -m testbed up
	@$(BIN)/python -m testbed status
	$(BIN)/vpa-fleet run --cluster testbed --tick-interval 30 \
	  --kubeconfig "$$($(BIN)/python -m testbed get kubeconfig)" \
	  --prometheus-url "$$($(BIN)/python -m testbed get prometheus_url)"

testbed-up: install testbed
	$(BIN)/python -m testbed up

testbed-down:
	$(BIN)/python -m testbed down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
