# The app image: the models image's layers at the bottom, then the base image's root filesystem (one layer), the
# venv (one layer) and the app code.
#
#   docker build -f Dockerfile.models -t modelbake/models:latest .
#   docker build --build-arg MODELS_IMAGE=modelbake/models:latest -t modelbake/app .
#   docker run --rm --network none modelbake/app verify
#
# or `docker buildx bake` (docker-bake.hcl), or `python build.py` (mirrors, CA bundle, HF token, caches, report).
#
# Why the models go at the bottom: an image store unpacks a layer once per chain (the layer and every layer below
# it). Starting FROM the models image, every app built on it, whatever its base or dependencies, has the models
# image's own chains: one copy of the models on disk per machine, none unpacked again when the base or a dependency
# changes. The cost: a model's pin change re-unpacks the layers above it (base, venv, code; no download).
# Nothing here depends on the manifest: the models image carries its layers and MODELBAKE_SPACY_PATH.

ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG MODELS_IMAGE=modelbake/models:latest

# The runtime root filesystem: the base image and the app's user. It becomes ONE layer of the app, the same blob
# whenever this stage runs again on the same base (a lost cache, another app's CI): every file and directory the
# step writes gets time 0, and useradd takes /etc/shadow's last-change day from SOURCE_DATE_EPOCH. So apps on one
# base and one models image share this layer by digest, in a registry and on a node (tests/test_docker_layout.py).
FROM ${BASE_IMAGE} AS base
RUN start="$(date +%s.%N)" \
 && export SOURCE_DATE_EPOCH=0 \
 && groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 --home-dir /home/app --create-home app \
 && find / -xdev -newermt "@${start}" -exec touch -h -d @0 {} +

# Replaced by `--build-context wheels=DIR` (a wheelhouse holding the torch CPU wheel); empty otherwise.
FROM scratch AS wheels

# Replaced by `--build-context manifest=DIR` (build.py does, for a manifest other than ./models.toml).
FROM scratch AS manifest
COPY models.toml models.lock* /

FROM base AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PYTHONDONTWRITEBYTECODE=1
# The image's Python dependencies from their lock, requirements/app.txt (`make lock-deps`): every package pinned
# with its hashes, installed in ONE pip pass that resolves nothing (--require-hashes --no-deps), torch included
# (2.13.0+cpu: from the wheelhouse when it holds the wheel, else the PyTorch CPU index). openai-whisper is in
# the lock without triton (~1 GB, useless on CPU), which --no-deps keeps out. It is the one sdist: pip builds
# it with the lock's setuptools (PIP_CONSTRAINT reaches pip's isolated build environment; a version only, as
# hashes there would demand `==` of whisper's own `setuptools>=61.2`). modelbake's source is NOT installed
# here, so an app code change never rebuilds this (1.6 GB) layer; only a change of the lock does.
RUN --mount=type=secret,id=ca,target=/etc/ssl/certs/ca-certificates.crt,required=false \
    --mount=type=cache,id=modelbake-pip,target=/root/.cache/pip,sharing=locked \
    --mount=type=bind,from=wheels,target=/wheels \
    --mount=type=bind,source=requirements/app.txt,target=/tmp/requirements/app.txt \
    set -eu; \
    python -m venv /opt/venv; \
    if ls /wheels/torch-*.whl >/dev/null 2>&1; then \
      set -- --find-links /wheels; \
    else \
      set -- --extra-index-url "$TORCH_INDEX_URL"; \
    fi; \
    sed -n 's/^\(setuptools==[^ ]*\).*/\1/p' /tmp/requirements/app.txt > /tmp/build-constraints.txt; \
    PIP_CONSTRAINT=/tmp/build-constraints.txt \
      /opt/venv/bin/pip install --require-hashes --no-deps "$@" -r /tmp/requirements/app.txt; \
    rm /tmp/build-constraints.txt

# Replaced by the models target (`target:models`, bake and build.py) or a models image built elsewhere.
FROM ${MODELS_IMAGE} AS models

FROM models AS app
# hadolint ignore=DL3067
COPY --link --from=base / /
COPY --link --from=deps /opt/venv /opt/venv
ARG MODELBAKE_PROFILE=
# The whole config is set here: an image FROM the models image inherits none of the base image's. Models are
# read-only for the app (root-owned, 0644/0755); caches the libraries write go to /tmp. PYTHONPATH: the app's
# code, then each spaCy pipeline's own directory (MODELBAKE_SPACY_PATH, set by the models image), so
# `spacy.load(name)` finds every pipeline. The /models paths are modelbake's (src/modelbake/paths.py).
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app/src${MODELBAKE_SPACY_PATH:+:${MODELBAKE_SPACY_PATH}} \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_CACHE=/models/huggingface/hub \
    MODELBAKE_WHISPER_ROOT=/models/whisper \
    MODELBAKE_MODELS=/models \
    MODELBAKE_PROFILE=${MODELBAKE_PROFILE} \
    XDG_CACHE_HOME=/tmp/.cache \
    NUMBA_CACHE_DIR=/tmp/.cache/numba
# WORKDIR before the code: it makes a directory, so BuildKit first merges every `COPY --link` layer below it into
# one filesystem, the base's and the venv's files included (7-8 s; bench/results.md). Here that merge is cached
# with them; after the code only instructions that touch no file follow, so an edit costs its own layers (~1 s).
WORKDIR /app
# The app code, last: an edit here rebuilds only these small layers.
COPY --link --chmod=0755 docker/entrypoint.sh /usr/local/bin/modelbake-entrypoint
COPY --link --from=manifest / /app/
COPY --link src/ /app/src/
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/modelbake-entrypoint"]
CMD ["verify"]
