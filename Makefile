# Stalwart: `make demo` and `make test` set everything up themselves on a fresh Debian machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test test-unit test-integration test-chaos bench system-deps clean lint

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

demo: $(STAMP) system-deps
	$(BIN)/stalwart demo

test: $(STAMP) system-deps
	bash scripts/services.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-chaos: $(STAMP) system-deps
	bash scripts/services.sh
	$(BIN)/python -m pytest -q tests/chaos

bench: $(STAMP) system-deps
	bash scripts/services.sh
	bash bench/setup.sh
	bench/.venv/bin/python bench/engine.py

lint: $(STAMP)
	$(BIN)/ruff check stalwart

clean:
	rm -rf $(VENV) .stalwart .pytest_cache
