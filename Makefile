# Set-up and test entry points. Both targets create .venv/ on first use.
#
# PyTorch is installed on its own, before the project, so that a CPU machine gets the CPU
# build. GPU hosts override the pin, e.g.:
#   make test TORCH_SPEC='torch==2.13.0' TORCH_INDEX='--index-url https://download.pytorch.org/whl/cu128'
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
BIN          = $(VENV)/bin
STAMP        = $(VENV)/.installed

.PHONY: serve test lint check-services bench clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/python -m aam_service

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

check-services:
	./scripts/services.sh

test: $(STAMP) check-services lint
	./scripts/compose_check.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/unifrac.py

clean-venv:
	rm -rf $(VENV)
