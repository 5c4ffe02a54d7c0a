# eta: make install | test | lint | format | demo | lock | docs
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ETA := $(VENV)/bin/eta
# The demo keeps everything (MLflow, data lake, reports) in ./.eta unless told otherwise.
DEMO_HOME ?= $(CURDIR)/.eta
DEMO_PORT ?= 9696

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
	ETA_HOME=$(DEMO_HOME) $(ETA) ingest --synthetic 200000 --seed 42
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
	ETA_HOME=$(DEMO_HOME) $(ETA) pipeline --synthetic 200000 --seed 42 --drift; \
	  status=$$?; test $$status -eq 3 || { echo "expected a promotion (exit 3), got $$status"; exit 1; }
	ETA_HOME=$(DEMO_HOME) $(ETA) register --list
	@echo "drift reports: $(DEMO_HOME)/reports/"
	@# The service: start it, answer one order through it, stop it (SIGTERM flushes the log).
	ETA_HOME=$(DEMO_HOME) $(ETA) serve --port $(DEMO_PORT) 2>$(DEMO_HOME)/serve.log & pid=$$!; \
	  ETA_HOME=$(DEMO_HOME) $(ETA) predict --json examples/order.json \
	    --url http://127.0.0.1:$(DEMO_PORT) --wait 120; \
	  status=$$?; kill -TERM $$pid; wait $$pid; exit $$status
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
