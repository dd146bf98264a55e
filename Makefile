# modelbake: every command a person or CI runs, in one place.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where torch 2.13.0+cpu comes from: a wheelhouse holding its wheel (this machine's /opt/wheels), else the
# PyTorch CPU index (PyPI's Linux wheel of torch pulls gigabytes of CUDA libraries).
WHEELHOUSE ?= /opt/wheels
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
TORCH_FROM ?= $(if $(wildcard $(WHEELHOUSE)/torch-*.whl),--find-links $(WHEELHOUSE),--extra-index-url $(TORCH_INDEX_URL))
PROFILE ?= test
PYTEST_ARGS ?=

.PHONY: setup lock-deps engine base-image preload-ml-models clean-cache verify test test-unit test-integration test-docker \
	demo demo-local lint dockerfile dockerfile-check bench bench-quick
BASE_IMAGE ?= modelbake/python-base:3.11-bookworm

$(BIN)/modelbake: pyproject.toml requirements/app.txt requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The image's lock plus the dev tools' (pinned to the same versions where they overlap), hash-checked and
	# installed as they are (--no-deps: nothing resolved, so torch CPU once and openai-whisper without triton).
	$(BIN)/pip install -q --require-hashes --no-deps $(TORCH_FROM) -r requirements/app.txt -r requirements/dev.txt
	# modelbake itself, editable; every dependency it declares is in the locks.
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/modelbake

# The locks, resolved by uv for the image's platform (CPython 3.11, x86_64 manylinux_2_28) with every file's
# hash: requirements/app.txt (pyproject.toml's dependencies + [ml] + requirements/app.in: what the image and
# `make setup` install), requirements/dev.txt (the [dev] extra, constrained to app.txt's pins) and
# requirements/fetch.txt (pyproject.toml's dependencies but requirements/fetch-exclude.txt's, at app.txt's pins:
# the venv of Dockerfile.models' fetch stage, which every model step runs on). Pins already in a lock are kept,
# so running it again changes nothing, and after an edit of pyproject.toml or requirements/*.in it adds or drops
# only what changed; move pins with UV_FLAGS=--upgrade or UV_FLAGS="--upgrade-package NAME". torch comes from
# the wheelhouse when it holds the wheel, else the PyTorch CPU index (`--torch-backend cpu`); for another
# platform, see requirements/app.in. uv writes each lock without its own header (which leaves out --find-links
# and the index), then the header with the full command goes on.
UV ?= $(BIN)/uv
UV_FLAGS ?=
LOCK_PYTHON ?= 3.11
LOCK_PLATFORM ?= x86_64-manylinux_2_28
TORCH_SOURCE ?= $(if $(wildcard $(WHEELHOUSE)/torch-*.whl),--find-links $(WHEELHOUSE),--torch-backend cpu)
UV_COMPILE = pip compile --quiet --no-config --system-certs --generate-hashes --no-header --python-version $(LOCK_PYTHON) \
	--python-platform $(LOCK_PLATFORM) --index-url https://pypi.org/simple $(TORCH_SOURCE) \
	--excludes requirements/exclude.txt
APP_LOCK = $(UV_COMPILE) pyproject.toml --extra ml requirements/app.in -o requirements/app.txt
DEV_LOCK = $(UV_COMPILE) pyproject.toml --extra dev -c requirements/app.txt -o requirements/dev.txt
FETCH_LOCK = $(UV_COMPILE) --excludes requirements/fetch-exclude.txt pyproject.toml -c requirements/app.txt \
	-o requirements/fetch.txt

# With UV=uv (a uv on PATH) it needs no venv.
lock-deps: $(if $(filter $(BIN)/uv,$(UV)),setup)
	$(UV) $(APP_LOCK) $(UV_FLAGS)
	{ printf '%s\n' \
	  '# The Python dependencies of the image (the Dockerfile deps stage) and of `make setup`, every one pinned' \
	  '# with the sha256 of each of its files, installed with `pip install --require-hashes --no-deps`.' \
	  '# torch 2.13.0+cpu has the hash of the cp311 x86_64 wheel of the PyTorch CPU index; other platforms and' \
	  '# the inputs: requirements/app.in. Do not edit: regenerate with `make lock-deps`, which runs' \
	  '#    uv $(APP_LOCK)'; cat requirements/app.txt; } > requirements/app.txt.tmp
	mv requirements/app.txt.tmp requirements/app.txt
	$(UV) $(DEV_LOCK) $(UV_FLAGS)
	{ printf '%s\n' \
	  '# The dev tools of `make setup` (pyproject.toml [dev]) at the versions of requirements/app.txt wherever the' \
	  '# two overlap, every one pinned with its hashes. Do not edit: regenerate with `make lock-deps`, which runs' \
	  '#    uv $(DEV_LOCK)'; cat requirements/dev.txt; } > requirements/dev.txt.tmp
	mv requirements/dev.txt.tmp requirements/dev.txt
	$(UV) $(FETCH_LOCK) $(UV_FLAGS)
	{ printf '%s\n' \
	  '# The venv of the fetch stage of Dockerfile.models, which every model step runs on: the dependencies of' \
	  '# pyproject.toml but those of the CLI alone (requirements/fetch-exclude.txt), at the versions of' \
	  '# requirements/app.txt, every one pinned with its hashes, bind-mounted into the stage and installed with' \
	  '# `pip install --require-hashes --no-deps`. Do not edit: regenerate with `make lock-deps`, which runs' \
	  '#    uv $(FETCH_LOCK)'; cat requirements/fetch.txt; } > requirements/fetch.txt.tmp
	mv requirements/fetch.txt.tmp requirements/fetch.txt

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

# Python (ruff: lint and format; mypy: types of src/modelbake, [tool.mypy] in pyproject.toml), the workflows (actionlint with shellcheck on their scripts; zizmor, offline) and the
# Dockerfiles (hadolint, configured by .hadolint.yaml). All are wheels from the dev extra; no network needed.
lint: setup
	$(BIN)/ruff check src tests $(wildcard build.py bench testkit)
	$(BIN)/ruff format --check src tests $(wildcard build.py bench testkit)
	$(BIN)/mypy
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
	$(BIN)/python -m testkit.demo

# Dockerfile.models and the model block of Dockerfile are generated from models.toml + models.lock.
dockerfile: setup
	$(BIN)/modelbake dockerfile --manifest models.toml

dockerfile-check: setup
	$(BIN)/modelbake dockerfile --manifest models.toml --check

# The same without Docker: the sample episode goes through the local `podcast-pipeline`.
demo-local: setup
	command -v espeak-ng >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng)
	$(BIN)/python -m testkit.demo --no-docker

# The old layer order against the new (and a naive Dockerfile) at real model sizes, through the local mirror at
# 100 MB/s: writes bench/results.md, bench/results.png and the README's block (82 min on 2 cores, 50 of them
# waits for the engine's garbage collection); bench-quick: the same scenarios with fewer repetitions
# (bench/results-quick.md). Both need the engine and the base image; the chart needs matplotlib.
bench: setup engine base-image
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m bench

bench-quick: setup engine base-image
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m bench --quick
