# modelbake: every command a person or CI runs, in one place.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
WHISPER_SPEC ?= openai-whisper==20250625
PROFILE ?= test
PYTEST_ARGS ?=

.PHONY: setup preload-ml-models clean-cache verify test test-unit test-integration test-docker demo lint bench bench-quick

$(BIN)/modelbake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: any other spec pulls the CUDA build (gigabytes).
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	# openai-whisper without its deps (they include triton, ~1 GB, useless on CPU); its real deps come from [ml].
	$(BIN)/pip install -q --no-deps "$(WHISPER_SPEC)"
	$(BIN)/pip install -q -e ".[ml,dev]"
	touch $@

setup: $(BIN)/modelbake

preload-ml-models: setup
	$(BIN)/modelbake preload --profile $(PROFILE)

verify: setup
	$(BIN)/modelbake verify --profile $(PROFILE)

clean-cache: setup
	$(BIN)/modelbake clean-cache

lint: setup
	$(BIN)/ruff check src tests build.py bench

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/pytest -m "ml_models or docker" $(PYTEST_ARGS)

test-docker: setup
	$(BIN)/pytest -m docker $(PYTEST_ARGS)

demo: setup
	$(BIN)/python -m modelbake.demo
