"""Generate `Dockerfile.models` from manifest + lock.

A Dockerfile cannot loop, yet every model must be a build step and an image layer of its own: one step per
model keeps a model's cache key to (base image, fetch code, that model's lock entry), so changing one pin
re-fetches one model and leaves every other model layer's digest alone. So the text is generated, committed,
and checked for drift (`modelbake dockerfile --check`). The app `Dockerfile` is not generated: it starts FROM the
models image, whatever its layers.

Pure: no I/O besides what `sync_dockerfile()` reads and writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import StaleError, write_error
from ..lockfile import FileRef, Lock, LockedModel, entry_json, spec_fields
from ..manifest import Manifest, ModelSpec
from ..paths import MODELS_ROOT as _MODELS_ROOT
from ..paths import image_paths, image_spacy_path, in_layer_root, layer_paths, layer_root
from .layers import DEFAULT_FILE_LAYERS_OVER, Layer, big_files, plan_layers, stage_name

DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"
MODELS_ROOT = _MODELS_ROOT.as_posix()

# What a model step runs: the fetch path's own entry point, never the CLI (see fetch_entry.py).
FETCH_COMMAND = "python -m modelbake.fetch_entry"
# The modules `python -m modelbake.fetch_entry` imports, and nothing else: only these enter the fetch stage, so
# a model step's cache key is (base image, this code, that model's lock entry). Editing the CLI, its progress
# bars, verify, the mirror or the app never re-runs a model step. tests/test_dockerfile.py proves the list is
# closed (the entry point fetches with only these files present).
FETCH_SOURCES = (
    "src/modelbake/__init__.py",
    "src/modelbake/atomic.py",
    "src/modelbake/constants.py",
    "src/modelbake/digests.py",
    "src/modelbake/download.py",
    "src/modelbake/errors.py",
    "src/modelbake/fetch_entry.py",
    "src/modelbake/filelayers.py",
    "src/modelbake/lineprogress.py",
    "src/modelbake/lockfile.py",
    "src/modelbake/manifest.py",
    "src/modelbake/mirrors.py",
    "src/modelbake/paths.py",
    "src/modelbake/preload.py",
    "src/modelbake/state.py",
)
FETCH_PACKAGES = ("src/modelbake/fetchers",)
# What the fetch code needs installed: pyproject.toml's dependencies but rich (the CLI's progress bars), locked
# with hashes by `make lock-deps` at requirements/app.txt's versions. Bind-mounted into the one step that
# installs it, never copied into a layer: that step's key is this file's bytes (with the base image), so two
# builds a month apart install the same versions, and an edit of pyproject.toml or of another lock is no input
# of a model step.
FETCH_LOCK = "requirements/fetch.txt"
FETCH_LOCK_MOUNT = f"--mount=type=bind,source={FETCH_LOCK},target=/tmp/{FETCH_LOCK}"

# Secrets: never in a layer, the history, the config or a cache key.
CA_MOUNT = "--mount=type=secret,id=ca,target=/etc/ssl/certs/ca-certificates.crt,required=false"
MIRRORS_MOUNT = "--mount=type=secret,id=mirrors,target=/run/secrets/mirrors,required=false"
TOKEN_MOUNT = "--mount=type=secret,id=hf_token,target=/run/secrets/hf_token,required=false"
# The lock, for a file's own step: where to fetch the file from (repo at the locked revision) is transport, like a
# mirror, and must not key the step: the file's sha256 does, so a new revision keeps every big file's layer.
LOCK_MOUNT = "--mount=type=secret,id=lock,target=/run/secrets/lock"
PIP_CACHE_MOUNT = "--mount=type=cache,id=modelbake-pip,target=/root/.cache/pip,sharing=locked"

LOCK_HASH_LABEL = "org.modelbake.lock-hash"
# The models image's ENV: every spaCy pipeline's directory in the image, `:`-separated (paths.image_spacy_path).
SPACY_PATH_ENV = "MODELBAKE_SPACY_PATH"  # an image's variable (the Dockerfiles'), not one modelbake reads


def layer_copy_line(layer: Layer) -> str:
    """The models image's copy of one layer: its stage's layer root, copied to `/`."""
    return f"COPY --link --from={layer.stage} {layer.root}/ /"


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is JSON-compatible for these values
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"cannot write {value!r} as TOML")


def manifest_entry_toml(spec: ModelSpec) -> str:
    """The one-model manifest an unlocked model step fetches from."""
    lines = [f"[models.{spec.id}]", f"family = {_toml_value(spec.family)}"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in spec_fields(spec).items()]
    return "\n".join(lines)


def _describe(spec: ModelSpec, entry: LockedModel | None) -> str:
    if entry is None:
        return f"{spec.family} {spec.source}: NOT LOCKED"
    return f"{spec.family} {spec.source} @ {entry.revision[:12]}, {entry.total_bytes:,} bytes"


def _model_stage(
    spec: ModelSpec, entry: LockedModel | None, big: list[FileRef], file_layers_over: int | None
) -> list[str]:
    name = stage_name(spec.id)
    lines = [f"# {spec.id}: {_describe(spec, entry)}"]
    if big:
        lines.append(
            f"# Its {len(big)} file(s) over {file_layers_over:,} bytes are layers of their own (file-* stages)."
        )
    if entry is None:
        lines.append(
            "# No lock entry: fetched from the manifest entry below (revision not pinned; the step stays cached"
        )
        lines.append(
            "# until this entry changes). Run `modelbake lock` where the hubs are reachable, then `make dockerfile`."
        )
    root = layer_root(spec)
    lines += [
        f"FROM fetch AS {name}",
        "ARG SOURCE_DATE_EPOCH=0",
        f"RUN {CA_MOUNT} \\",
        f"    {MIRRORS_MOUNT} \\",
        f"    {TOKEN_MOUNT} \\",
    ]
    # Only the model's own paths move into the layer root (never fetch state or a library's lock files).
    moves = " ".join(
        f"&& mkdir -p {dest.rsplit('/', 1)[0]} && mv {path} {dest}"
        for path, dest in zip(image_paths(spec), layer_paths(spec), strict=True)
    )
    tail = f'&& chmod -R a+rX,go-w {MODELS_ROOT} {moves} && find {root} -exec touch -h -d "@$SOURCE_DATE_EPOCH" {{}} +'
    if entry is not None:
        split = f" --file-layers-over-bytes {file_layers_over}" if big else ""
        lines.append(f"    {FETCH_COMMAND} --entry -{split} --dest {MODELS_ROOT} <<'ENTRY' {tail}")
        lines.append(entry_json(entry))
        lines.append("ENTRY")
    else:
        lines.append(
            f"    {FETCH_COMMAND} --manifest /dev/stdin --model {spec.id} --dest {MODELS_ROOT} <<'MANIFEST' {tail}"
        )
        lines.append(manifest_entry_toml(spec))
        lines.append("MANIFEST")
    return lines


def _file_stage(layer: Layer) -> list[str]:
    """One big file's own step, keyed by the file alone (model, repo, path, sha256, size): the lock secret says
    which revision to fetch it from, and a new revision that keeps the file keeps this step and its layer."""
    big = layer.file
    assert big is not None
    source, dest = "/" + layer.owns[0], in_layer_root(layer.root, layer.owns[0])
    return [
        f"# {big.model_id}: {big.path}, {big.size:,} bytes (sha256 {big.sha256[:12]})",
        f"FROM fetch AS {layer.stage}",
        "ARG SOURCE_DATE_EPOCH=0",
        f"RUN {CA_MOUNT} \\",
        f"    {MIRRORS_MOUNT} \\",
        f"    {TOKEN_MOUNT} \\",
        f"    {LOCK_MOUNT} \\",
        f"    {FETCH_COMMAND} --file - --lock /run/secrets/lock --dest {MODELS_ROOT} <<'FILE' "
        f"&& mkdir -p {dest.rsplit('/', 1)[0]} && mv {source} {dest} && chmod -R a+rX,go-w {layer.root} "
        f'&& find {layer.root} -exec touch -h -d "@$SOURCE_DATE_EPOCH" {{}} +',
        big.to_json(),
        "FILE",
    ]


def _header(manifest: Manifest, lock: Lock | None, profile: str | None) -> list[str]:
    what = f"profile {profile!r}" if profile else "every model"
    return [
        f"# Dockerfile.models: GENERATED by `modelbake dockerfile` from {manifest.path.name} and its lock "
        f"({what}); do not edit.",
        "# Regenerate with `make dockerfile`; a test fails when this file drifts from models.toml/models.lock.",
        "#",
        "#   docker build -f Dockerfile.models -t modelbake/models:latest .",
        "#   (python build.py adds mirrors, the CA bundle and the HF token as secrets, caches and a report)",
        "#",
        "# Stages: `fetch` (modelbake's fetch code, no torch; on the build platform) -> one `fetch-<id>` stage per",
        "# model, whose one RUN is keyed on base + fetch code + that model's lock entry only, and one `file-<sha>`",
        "# stage per big file, keyed on that file alone -> `models` (FROM scratch), one `COPY --link` layer per",
        "# model and per big file. Every file and directory of a layer carries SOURCE_DATE_EPOCH (default 0) as",
        "# its time, so two cold builds of one lock give identical layer digests, on every platform.",
        "# Secrets: ca (CA bundle), mirrors (a TOML [mirrors] table, e.g. --secret id=mirrors,src=models.toml),",
        "# hf_token (all optional) and lock (models.lock: needed by file-* stages). A mirror on loopback needs",
        "# `--network host`.",
        "",
    ]


def _fetch_stage() -> list[str]:
    lines = [
        f"ARG BASE_IMAGE={DEFAULT_BASE_IMAGE}",
        "",
        "# On the build platform: model files are the same bytes for every target platform, so a multi-platform",
        "# build fetches each model once and every platform's image gets the same model layers.",
        "FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS fetch",
        "# MODELBAKE_HF_TOKEN_FILE is where the hf_token secret is mounted, never a token (hadolint DL3064).",
        "# hadolint ignore=DL3064",
        "ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
        "    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\",
        "    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\",
        "    PYTHONDONTWRITEBYTECODE=1 \\",
        "    PYTHONPATH=/opt/modelbake/src \\",
        "    PATH=/opt/fetch/bin:$PATH \\",
        "    MODELBAKE_MIRRORS_FILE=/run/secrets/mirrors \\",
        "    MODELBAKE_HF_TOKEN_FILE=/run/secrets/hf_token",
        f"# Only what the fetch code needs ({FETCH_LOCK}: huggingface_hub, httpx, filelock and what they need, each",
        "# pinned with its hashes; no torch, no rich), installed as locked: nothing is resolved here.",
        f"RUN {CA_MOUNT} \\",
        f"    {PIP_CACHE_MOUNT} \\",
        f"    {FETCH_LOCK_MOUNT} \\",
        "    python -m venv /opt/fetch \\",
        f"    && pip install --require-hashes --no-deps -r /tmp/{FETCH_LOCK}",
        "# The fetch code only (see FETCH_SOURCES in src/modelbake/image/dockerfile.py): the CLI is not in this stage.",
        f"COPY --link {' '.join(FETCH_SOURCES)} /opt/modelbake/src/modelbake/",
    ]
    for package in FETCH_PACKAGES:
        lines.append(f"COPY --link {package}/*.py /opt/modelbake/{package}/")
    lines.append("")
    return lines


def render_models_dockerfile(
    manifest: Manifest,
    lock: Lock | None,
    profile: str | None = None,
    file_layers_over: int | None = DEFAULT_FILE_LAYERS_OVER,
) -> str:
    """The text of Dockerfile.models for the models of `profile` (all models when None).

    Fetch stages come in manifest order, each model's file stages after it; the models stage's layers in
    `layers.layer_order` (largest at the bottom). `file_layers_over` None: no file layers, one layer per model.
    """
    specs = manifest.select(profile)
    layers = plan_layers(specs, lock, file_layers_over)
    files = {layer.stage: layer for layer in layers if layer.file is not None}
    lines = _header(manifest, lock, profile) + _fetch_stage()
    for spec in specs:
        entry = lock.get(spec.id) if lock else None
        # Every big file of the model stays out of its step, also one whose layer another model's plan holds
        # (two entries of one repo share a blob): else the rest layer would carry it as well.
        lines += _model_stage(spec, entry, big_files(spec, entry, file_layers_over), file_layers_over)
        lines.append("")
        for layer in [layer for layer in files.values() if layer.file and layer.file.model_id == spec.id]:
            lines += _file_stage(layer)
            lines.append("")
    lines.append("# One layer per model (and per big file), holding /models/<its files> only.")
    lines.append("# Largest at the bottom: an image store unpacks again every layer above a changed one.")
    lines.append("FROM scratch AS models")
    lines.append("# Which lock the layers are (build.py passes its hash): an app built on this image checks it.")
    lines.append("ARG MODELBAKE_LOCK_HASH=")
    lines.append(f"LABEL {LOCK_HASH_LABEL}=$MODELBAKE_LOCK_HASH")
    spacy_path = image_spacy_path(specs)
    if spacy_path:
        # Each spaCy pipeline is a directory of its own: the app (FROM this image) puts them on PYTHONPATH.
        lines.append(f"ENV {SPACY_PATH_ENV}={spacy_path}")
    lines += [layer_copy_line(layer) for layer in layers]
    return "\n".join(lines) + "\n"


def sync_dockerfile(manifest_path: Path, root: Path, check: bool = False) -> list[Path]:
    """Regenerate `root/Dockerfile.models` from the manifest and its lock; returns it when it was out of date
    (written, unless `check`). Raises typed errors naming the file at fault."""
    from ..lockfile import read_lock
    from ..manifest import load_manifest

    manifest = load_manifest(manifest_path)
    path = root / "Dockerfile.models"
    text = render_models_dockerfile(manifest, read_lock(manifest.lock_path))
    if path.is_file() and path.read_text() == text:
        return []
    if check:
        raise StaleError(
            f"{path}: out of date with {manifest.path} and its lock",
            hint="run `make dockerfile` (or `modelbake dockerfile`) and commit the result",
        )
    try:
        path.write_text(text)
    except OSError as exc:
        raise write_error(exc, path) from exc
    return [path]
