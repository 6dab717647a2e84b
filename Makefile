# forum-monitor: `make run` serves the example config on SQLite; `make test` runs every check.
# Both create their own virtualenv in .venv on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= deploy/examples/config.toml

.PHONY: run demo test lint typecheck pytest system-deps bench generate clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.installed-dev: pyproject.toml $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## Run the service on its embedded default (SQLite under ./var/).
run: $(BIN)/.installed
	$(BIN)/forum-monitor serve --config $(CONFIG)

## The offline demo: simulated forums on 127.0.0.1 watched by the real service.
demo: $(BIN)/.installed
	$(BIN)/forum-monitor demo

## Install what the tests need, then lint, type-check and run the whole suite.
test: system-deps $(BIN)/.installed-dev lint typecheck pytest

system-deps:
	@sh .ci/system-deps.sh

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check monitor tests alembic grafana deploy $(wildcard bench)
	$(BIN)/ruff format --check monitor tests alembic grafana deploy $(wildcard bench)

typecheck: $(BIN)/.installed-dev
	$(BIN)/mypy

pytest: $(BIN)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed-dev
	$(BIN)/python -m bench

## Regenerate the committed dashboards, then the Kubernetes manifests made from them and the rules.
generate: $(BIN)/.installed-dev
	$(BIN)/python grafana/generate.py
	$(BIN)/python deploy/kubernetes/generate.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
