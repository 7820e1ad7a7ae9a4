# treatyflow: `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export TREATYFLOW_STATE_DIR ?= $(CURDIR)/.state
# The local stack runs on a declared demo clock: one treaty day = 1 s (30 days = 30 s).
# Real time: make up TREATYFLOW_SECONDS_PER_DAY=86400
export TREATYFLOW_SECONDS_PER_DAY ?= 1
# How many gateways and workers `make up` runs (docs/operators/scale-out.md).
GATEWAYS ?= 1
WORKERS ?= 1

.PHONY: agency-dist help setup system demo test test-unit up down status lint clean ui-check bench security-check chaos history report

help:
	@echo "make demo   - set up, start the local stack, run the scenario demo"
	@echo "make test   - set up and run the test suite"
	@echo "make test-unit - the fast part: no stack, no dev server (under 3 minutes)"
	@echo "make up / make down / make status - the local stack for longer use (make up GATEWAYS=2 WORKERS=2: replicas)"
	@echo "make lint   - ruff and mypy"
	@echo "make agency-dist - build the treatyflow-agency wheel (the agency client alone) into dist/"
	@echo "make contract - regenerate the wire contract in docs/contract (schemas, AsyncAPI, vectors)"
	@echo "make ui-check - the Temporal UI, filtered on overdue requests, in headless Chromium"
	@echo "make security-check - the hostile-input catalogue against the local stack, as one authority"
	@echo "make bench  - treatyflow against bare Temporal on a fresh stack (figures in docs/benchmarks)"
	@echo "make chaos  - 500 requests on a fresh stack while workers, gateway, RabbitMQ, Temporal are killed"
	@echo "make history - write 5 years of simulated requests into the record (treatyflow stats, case)"
	@echo "make report - the record's figures as a static page with charts (.state/report; history first if none), checked in headless Chromium"

NODE_AGENCY := tests/node_agency
setup: system $(BIN)/.installed $(NODE_AGENCY)/node_modules/.installed

system:
	@bash scripts/ensure-system.sh

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# The Node.js agency of tests/test_node_agency.py: npm's jose and amqplib, as locked.
$(NODE_AGENCY)/node_modules/.installed: $(NODE_AGENCY)/package-lock.json $(NODE_AGENCY)/package.json | system
	npm ci --prefix $(NODE_AGENCY) --no-audit --no-fund --loglevel=error
	@touch $@

demo: setup
	$(BIN)/python -m treatyflow.local.demo

# Chromium (Debian's) for the report's browser test (tests/test_report_browser.py) and
# promtool (Debian's prometheus) for the dashboard's queries (tests/test_dashboard.py).
test: setup
	@bash scripts/ensure-system.sh chromium prometheus
	$(BIN)/pytest

# Everything not marked `stack`: models, lifecycles, workflows on the time-skipping server.
test-unit: setup
	$(BIN)/pytest -m "not stack and not dist"

up: setup
	$(BIN)/python -m treatyflow.local.stack up --gateways $(GATEWAYS) --workers $(WORKERS)

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m treatyflow.local.stack down; fi

status: setup
	$(BIN)/python -m treatyflow.local.stack status --gateways $(GATEWAYS) --workers $(WORKERS)

# The Temporal UI in headless Chromium (Debian's), filtered on the Overdue attribute.
ui-check: setup
	@bash scripts/ensure-system.sh chromium
	@$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/pip install --quiet playwright
	$(BIN)/python -m treatyflow.local.uicheck

# The record's figures as a static page (docs/operators/statistics.md): simulated history
# first when the record holds no request yet (treatyflow history generate $(HISTORY_ARGS)),
# then treatyflow report, then the page in headless Chromium against the record's figures
# (its numbers, a Kaplan-Meier curve per requested state); screenshot report/report.png.
REPORT_DIR ?= $(TREATYFLOW_STATE_DIR)/report
report: setup
	@bash scripts/ensure-system.sh chromium
	@if $(BIN)/python -m treatyflow.cli stats --json | $(BIN)/python -c \
	    "import json, sys; sys.exit(json.load(sys.stdin)['totals']['sent'] > 0)"; then \
	  $(BIN)/python -m treatyflow.cli history generate $(HISTORY_ARGS); fi
	$(BIN)/python -m treatyflow.cli report -o $(REPORT_DIR)
	$(BIN)/python -m treatyflow.local.reportcheck $(REPORT_DIR)

# The hostile-input catalogue (treatyflow/securitycheck/catalogue.py), sent over AMQP with
# one authority's credentials by a separate process; its last line is the summary. First
# the host's part (treatyflow/securitycheck/host.py): file modes, listeners, the secret.
security-check: setup
	$(BIN)/python -m treatyflow.local.stack up
	$(BIN)/python -m treatyflow.securitycheck.host
	$(BIN)/python -m treatyflow.securitycheck

# The wire contract agencies build against, generated from the code (docs/contract/README.md);
# tests/test_contract_files.py fails when the committed files drift from it.
.PHONY: contract
contract: setup
	$(BIN)/python -m treatyflow.contract

lint: setup
	$(BIN)/ruff check treatyflow tests scripts
	$(BIN)/mypy treatyflow

clean: down
	rm -rf $(VENV) $(TREATYFLOW_STATE_DIR)

# Figures, not assertions: floor vs treatyflow, latency at offered loads, chart.
bench: setup
	@$(BIN)/python -c "import matplotlib" 2>/dev/null || $(BIN)/pip install --quiet matplotlib
	$(BIN)/python -m treatyflow.bench.run $(BENCH_ARGS)

# Faults the system must survive (issue 4): requests through a fresh stack (.state/chaos)
# while a bounded injector kills its components; last line requests=N faults=K lost=0 ...
chaos: setup
	$(BIN)/python -m treatyflow.chaos $(CHAOS_ARGS)

# Simulated history in the record (docs/operators/statistics.md): years of requests as the
# hub writes them, for `treatyflow stats`, `treatyflow case` and the report.
HISTORY_ARGS ?= --years 5 --per-year 2000
history: setup
	$(BIN)/python -m treatyflow.cli history generate $(HISTORY_ARGS)

# The agency client as its own distribution (agency/pyproject.toml), for authorities.
agency-dist: setup
	$(BIN)/pip wheel --quiet --no-deps -w dist ./agency
	@ls dist/treatyflow_agency-*.whl
