# eta: make install | test | lint | format | demo | lock | docs
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ETA := $(VENV)/bin/eta
# The demo keeps everything (MLflow, data lake, reports) in ./.eta unless told otherwise.
DEMO_HOME ?= $(CURDIR)/.eta
DEMO_PORT ?= 9696
# Orders of the base period and of the drifted batch (each), and live orders sent.
DEMO_ORDERS ?= 100000
DEMO_LIVE_ORDERS ?= 3000

.PHONY: install system-deps test lint format demo lock docs clean

install: $(VENV)/.installed

# A local virtualenv from the hash-pinned export of poetry.lock.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Headless Chromium renders the drift report in a test (Debian's package; installed when root).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "chromium is missing: install it (Debian/Ubuntu: sudo apt-get install chromium)"; exit 1; \
	  fi; }

# Two pytest workers (pytest-xdist), one per core of the machines we plan for; every test
# uses its own database, ports, folders and S3 bucket, so they can run side by side.
test: install system-deps
	$(PY) -m pytest -q -n 2

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: install
	ETA_HOME=$(DEMO_HOME) $(ETA) ingest --synthetic $(DEMO_ORDERS) --seed 42
	@# Train the candidates (tracked in MLflow) and register the first champion.
	ETA_HOME=$(DEMO_HOME) $(ETA) train
	ETA_HOME=$(DEMO_HOME) $(ETA) register
	ETA_HOME=$(DEMO_HOME) $(ETA) register --list
	@# The newest day against the champion's training data: same population, no drift.
	ETA_HOME=$(DEMO_HOME) $(ETA) drift-report
	@# Weeks later a shifted population arrives after the newest orders (a new market,
	@# bigger baskets, fewer dashers, slower deliveries). The pipeline compares the orders
	@# new to the champion with its training data, finds the drift, retrains on data that
	@# includes the new period, and the gate, scoring both models on the newest orders,
	@# promotes the new model: exit 3 is the expected outcome, anything else fails the demo.
	ETA_HOME=$(DEMO_HOME) $(ETA) pipeline --synthetic $(DEMO_ORDERS) --seed 42 --drift; \
	  status=$$?; test $$status -eq 3 || { echo "expected a promotion (exit 3), got $$status"; exit 1; }
	@echo "drift reports: $(DEMO_HOME)/reports/"
	@# The live loop. A deliberately weak candidate (10 boosting rounds, in its own
	@# experiment so that register picks it) loses the offline gate: it must become
	@# challenger, which eta serve shadows (ETA_SHADOW_ALIAS=challenger by default).
	ETA_HOME=$(DEMO_HOME) $(ETA) train --max-rounds 10 --experiment demo-weak
	set -o pipefail; ETA_HOME=$(DEMO_HOME) $(ETA) register --experiment demo-weak \
	  | tee $(DEMO_HOME)/register-weak.txt; \
	  grep -q ': challenger (' $(DEMO_HOME)/register-weak.txt || { echo "expected a challenger"; exit 1; }
	ETA_HOME=$(DEMO_HOME) $(ETA) register --list
	@# New orders, after the newest in the lake, without ids, as a client sends them.
	ETA_HOME=$(DEMO_HOME) $(ETA) synthetic $(DEMO_LIVE_ORDERS) --seed 7 --drift \
	  --output $(DEMO_HOME)/live-orders.csv
	@# The service: one order, then the whole file; it derives each order's id, answers
	@# with the champion and logs the champion's and the shadow's predictions.
	@# SIGTERM flushes the prediction log.
	ETA_HOME=$(DEMO_HOME) $(ETA) serve --port $(DEMO_PORT) 2>$(DEMO_HOME)/serve.log & pid=$$!; \
	  ETA_HOME=$(DEMO_HOME) $(ETA) predict --json examples/order.json \
	    --url http://127.0.0.1:$(DEMO_PORT) --wait 120 \
	  && ETA_HOME=$(DEMO_HOME) $(ETA) predict --input $(DEMO_HOME)/live-orders.csv \
	    --output $(DEMO_HOME)/live-predictions.parquet --url http://127.0.0.1:$(DEMO_PORT); \
	  status=$$?; kill -TERM $$pid; wait $$pid || status=1; exit $$status
	@# The orders are delivered: ingest their outcomes (same file, same derived ids).
	ETA_HOME=$(DEMO_HOME) $(ETA) ingest $(DEMO_HOME)/live-orders.csv
	@# Live quality per version, champion vs shadow challenger on the same orders: the
	@# weak challenger must lose (verdict champion) and must not be promoted (exit 0).
	set -o pipefail; ETA_HOME=$(DEMO_HOME) $(ETA) evaluate --promote \
	  | tee $(DEMO_HOME)/evaluate.txt; \
	  grep -q 'verdict: champion' $(DEMO_HOME)/evaluate.txt || { echo "expected verdict champion"; exit 1; }
	@echo "dashboard of every drift report (Ctrl-C stops it): ETA_HOME=$(DEMO_HOME) $(ETA) ui"

# The CLI reference, generated from each command's --help (tests/test_cli_docs.py checks it).
docs: install
	$(PY) docs/generate_cli_docs.py docs/cli.md

# Regenerate poetry.lock and its two pip exports (see ../shared/tools/relock --help):
# requirements.lock with the dev group (.venv, CI), requirements-runtime.lock without
# it (the Docker image). tests/test_deploy_files.py checks the two agree.
lock:
	../shared/tools/relock --export requirements-runtime.lock
	../shared/tools/relock --export requirements.lock --with dev

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(DEMO_HOME)
