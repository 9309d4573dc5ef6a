# `make demo` and `make test` are the two set-up commands of the README.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python builds from source; text-only is enough and builds faster.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
NOTE ?= data/examples/diabetes_followup.txt

.PHONY: install install-local kb demo test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -e '.[test]'

install-local: $(BIN)/python
	$(BIN)/pip install -e '.[test,local]'

kb: install
	$(BIN)/python cli.py icd build

demo: install-local kb
	$(BIN)/python cli.py predict $(NOTE)

test: install-local
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/icd_bench.py
