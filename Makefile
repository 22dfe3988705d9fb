# Stalwart: `make demo` and `make test` set everything up themselves on a fresh Debian machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

MODEL_WHEELS ?= $(HOME)/.cache/stalwart/wheels
LLAMA_CPP := llama-cpp-python==0.3.36

.PHONY: model model-wheel demo demo-deps test test-unit test-integration test-chaos bench system-deps clean lint sbom lock

# Runtime dependencies come from requirements.lock, installed with --require-hashes after a check
# against known-compromised releases; the test tools install on top (pip keeps the locked versions
# that already satisfy them) and the installed set is checked again.
PIP_STAMP := $(VENV)/.pip-stamp
$(PIP_STAMP):
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@touch $(PIP_STAMP)

$(STAMP): pyproject.toml requirements.lock | $(PIP_STAMP)
	$(PY) scripts/check_compromised.py --lock requirements.lock --no-installed
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(BIN)/python scripts/check_compromised.py
	@touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

demo-deps:
	@bash scripts/system-deps.sh demo

# The embedded model (provider = "embedded"): llama.cpp is compiled once into a wheel cache that later
# clones reuse; portable (no -march=native) so the cache survives CPU changes. Only what
# `import llama_cpp` loads is compiled (libllama, ggml): no multimodal library (LLAVA_BUILD), no
# `common` library (scripts/llama-slim.cmake), no tools, server, tests or examples: 74 files to
# compile instead of 178 (bench/README.md, "Building the embedded model"). --no-cache-dir: pip's own
# wheel cache would hand back a wheel built earlier with other flags.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF \
  -DCMAKE_PROJECT_llama_cpp_INCLUDE=$(CURDIR)/scripts/llama-slim.cmake
model-wheel: demo-deps | $(PIP_STAMP)
	@mkdir -p $(MODEL_WHEELS)
	@ls $(MODEL_WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || { \
	  echo "building llama-cpp-python once into $(MODEL_WHEELS) (a few minutes)"; \
	  grep -A1 '^llama-cpp-python' requirements-model.lock > $(MODEL_WHEELS)/llama.req; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(BIN)/python -m pip wheel -q --disable-pip-version-check --no-cache-dir --no-deps --require-hashes \
	    -r $(MODEL_WHEELS)/llama.req -w $(MODEL_WHEELS); }

model: $(STAMP) model-wheel
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-index --find-links $(MODEL_WHEELS) $(LLAMA_CPP)
	grep -v '^llama-cpp-python\|^    --hash=sha256:832db' requirements-model.lock > $(VENV)/model.req
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --require-hashes -r $(VENV)/model.req

# The demo's model steps run on the embedded model (SmolLM2-135M), the scripted `local` model as its
# fallback. On a fresh machine the model's one build runs beside the Python installs (-j2).
demo:
	@$(MAKE) --no-print-directory -j2 $(STAMP) model-wheel
	@$(MAKE) --no-print-directory model
	$(BIN)/stalwart demo

test: $(STAMP) system-deps model
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

sbom: $(STAMP)
	bash scripts/sbom.sh build/sbom $(BIN)/python

lock:
	bash scripts/lock.sh

lint: $(STAMP)
	$(BIN)/ruff check stalwart

clean:
	rm -rf $(VENV) .stalwart .pytest_cache
