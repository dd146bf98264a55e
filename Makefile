# modelbake: every command a person or CI runs, in one place.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
WHISPER_SPEC ?= openai-whisper==20250625
PROFILE ?= test
PYTEST_ARGS ?=

.PHONY: setup engine base-image preload-ml-models clean-cache verify test test-unit test-integration test-docker \
	demo demo-local lint dockerfile dockerfile-check bench bench-quick
BASE_IMAGE ?= modelbake/python-base:3.11-bookworm

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

# A Docker engine with buildx and the containerd image store (Debian 13's packages on Debian 12; idempotent).
engine:
	bash docker/install-engine.sh

# A local python:3.11-slim equivalent, for machines that reach no registry (idempotent).
base-image: engine
	bash docker/make-base-image.sh $(BASE_IMAGE)

preload-ml-models: setup
	$(BIN)/modelbake preload --profile $(PROFILE)

verify: setup
	$(BIN)/modelbake verify --profile $(PROFILE)

clean-cache: setup
	$(BIN)/modelbake clean-cache

# Python (ruff), the workflows (actionlint with shellcheck on their scripts; zizmor, offline) and the
# Dockerfiles (hadolint, configured by .hadolint.yaml). All are wheels from the dev extra; no network needed.
lint: setup
	$(BIN)/ruff check src tests $(wildcard build.py bench)
	$(BIN)/actionlint -shellcheck $(BIN)/shellcheck $(wildcard .github/workflows/*.yml .github/workflows/*.yaml)
	$(BIN)/zizmor --offline --no-progress .github
	$(BIN)/hadolint Dockerfile Dockerfile.models

# Every test: unit, ml_models and docker (the Docker ones need the engine and the base image).
test: setup engine base-image lint dockerfile-check
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: setup engine base-image
	$(BIN)/pytest -m "ml_models or docker" $(PYTEST_ARGS)

test-docker: setup engine base-image
	$(BIN)/pytest -m docker $(PYTEST_ARGS)

# The main job where no hub is reachable: tiny models -> local mirror -> lock -> preload -> verify ->
# image built from the mirror -> `docker run --network none IMAGE verify` -> a sample episode spoken by
# espeak-ng (installed with apt when missing) processed by the reference app in that offline image.
demo: setup engine base-image
	command -v espeak-ng >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng)
	$(BIN)/python -m modelbake.demo

# Dockerfile.models and the model block of Dockerfile are generated from models.toml + models.lock.
dockerfile: setup
	$(BIN)/modelbake dockerfile --manifest models.toml

dockerfile-check: setup
	$(BIN)/modelbake dockerfile --manifest models.toml --check

# The same without Docker: the sample episode goes through the local `podcast-pipeline`.
demo-local: setup
	command -v espeak-ng >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng)
	$(BIN)/python -m modelbake.demo --no-docker

# Naive Dockerfile vs modelbake at real model sizes, through the local mirror at 100 MB/s: writes
# bench/results.md and bench/results.png (about 25 min on 2 cores); bench-quick: the key scenarios at full
# size in minutes (bench/results-quick.md). Both need the engine and the base image; the chart needs matplotlib.
bench: setup engine base-image
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m bench

bench-quick: setup engine base-image
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m bench --quick
