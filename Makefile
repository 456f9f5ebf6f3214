# warwatch: `make run` sets everything up and runs the daemon; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run once test lint bench clean

$(STAMP): pyproject.toml
	@bash .ci/bootstrap "$(PYTHON)" "$(VENV)"
	@touch $@

## run: create the venv, install, and run the daemon on config.yaml and the sample corpus
run: $(STAMP)
	$(BIN)/monitor run --config config.yaml

## once: ingest the corpus, drain the pipeline, exit
once: $(STAMP)
	$(BIN)/monitor run --config config.yaml --once

## test: every test (starts its own redis-server)
test: $(STAMP)
	$(BIN)/python -m pytest

## lint: ruff and mypy
lint: $(STAMP)
	$(BIN)/ruff check monitor tests bench
	$(BIN)/ruff format --check monitor tests bench
	$(BIN)/mypy monitor

## bench: the pipeline benchmark (see bench/pipeline.py --help)
bench: $(STAMP)
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
