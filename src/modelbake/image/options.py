"""build.py's command line -> a frozen, typed `BuildOptions`.

argparse gives strings and an untyped Namespace; the planner and the build steps take `BuildOptions`, whose
values are already checked and parsed (mirrors as a mapping, caches as `CacheBackend`s), so a bad value is one
usage error before anything runs, and tests build options directly instead of going through argv.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..cache.spec import CACHE_COMPRESSIONS, CACHE_MODES, CacheBackend, parse_cache
from ..errors import ArgumentParser, UsageError
from ..mirrors import parse_mirror_args
from .bake import LAYER_COMPRESSIONS
from .dockerfile import DEFAULT_BASE_IMAGE
from .layers import DEFAULT_FILE_LAYERS_OVER

DEFAULT_MODELS_REPO = "modelbake/models"
DEFAULT_APP_REPO = "modelbake/app"
# Layer compression, from bench/results.md (real-size models, 2 cores): weights barely compress (gzip -1 and
# zstd -3 both save ~8%) while gzip costs ~24 s per GiB to write and ~10 s per GiB to unpack. The models image
# is uncompressed and forced (the blob IS the diff: nothing to compress, nothing to decompress on restore, and
# the cache exports reuse the same blobs). The app image's layers are uncompressed too: its model layers are
# the models image's layers (dockerfile.app_copy_line), and only with the same compression are they the same
# BLOBS, which a push then mounts from the models image's repository instead of uploading (0 model bytes per
# app, checked with a registry's log in tests/test_docker_shared.py); BuildKit compresses a whole image one
# way, so zstd for the app's venv would give every app its own copy of every model blob. `zstd` remains a
# choice for an app that shares nothing. Forced, or a layer the build cache already held with a gzip blob would
# keep it and the image's compression would depend on the engine's history.
DEFAULT_MODEL_LAYER_COMPRESSION = "uncompressed"
DEFAULT_APP_LAYER_COMPRESSION = "uncompressed"
NETWORKS = ("default", "host", "none")


@dataclass(frozen=True)
class BuildOptions:
    """Every build.py option, typed; the defaults are the command line's."""

    manifest: Path | None = None  # default: models.toml in the context
    profile: str | None = None  # default: every model
    models_only: bool = False
    tag: str | None = None
    models_tag: str | None = None
    models_image: str | None = None  # build the app on this (pushed) models image: no model step at all
    base_image: str = DEFAULT_BASE_IMAGE
    mirrors: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # --mirror FAMILY=URL
    ca_bundle: Path | None = None
    hf_token_file: Path | None = None
    wheelhouse: Path | None = None
    caches: tuple[CacheBackend, ...] = ()
    cache_read_only: bool = False
    cache_timeout: float = 20.0
    cache_compression: str | None = None
    models_cache_mode: str = "max"
    layer_compression: str = DEFAULT_MODEL_LAYER_COMPRESSION
    app_layer_compression: str = DEFAULT_APP_LAYER_COMPRESSION
    cache_budget: float = 10.0  # GB
    source_date_epoch: int = 0
    file_layers_over: int | None = DEFAULT_FILE_LAYERS_OVER  # bytes: a bigger file is a layer of its own; None: never
    refresh_models: bool = False
    no_cache: bool = False
    push: bool = False
    builder: str | None = None
    platform: str | None = None
    network: str | None = None  # None: not given (build.py may choose host for a loopback mirror)
    context: Path | None = None
    dry_run: bool = False
    json: Path | None = None
    rawjson: Path | None = None  # where buildx's progress stream goes, as it comes
    quiet: bool = False


def profile_name(options: BuildOptions) -> str:
    """The profile as tags and cache scopes name it: `all` without --profile."""
    return options.profile or "all"


def models_tag(options: BuildOptions, lock_hash: str) -> str:
    """The models image: --models-image, --models-tag, or `modelbake/models:<profile>-<lock hash>`."""
    return options.models_image or options.models_tag or f"{DEFAULT_MODELS_REPO}:{profile_name(options)}-{lock_hash}"


def app_tag(options: BuildOptions) -> str:
    return options.tag or f"{DEFAULT_APP_REPO}:{profile_name(options)}"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="build.py",
        description="Build the models image (one layer per model) and the app image on it with docker buildx.",
    )
    _what_to_build(p.add_argument_group("what to build"))
    _where_from(p.add_argument_group("where models and packages come from"))
    _remote_caches(p.add_argument_group("remote caches"))
    _layers_and_rebuilds(p.add_argument_group("layers and rebuilds"))
    _builder_and_output(p.add_argument_group("builder and output"))
    return p


def _what_to_build(what: argparse._ArgumentGroup) -> None:
    what.add_argument("--manifest", type=Path, help="manifest (default: models.toml beside build.py)")
    what.add_argument("--profile", help="profile of the manifest (default: every model)")
    what.add_argument("--models-only", action="store_true", help="build and tag only the models image")
    what.add_argument("--tag", help="app image tag (default modelbake/app:<profile>)")
    what.add_argument("--models-tag", help="models image tag (default modelbake/models:<profile>-<lock hash>)")
    what.add_argument(
        "--models-image",
        metavar="REF",
        help="build the app on this models image (e.g. registry/team/models@sha256:...) instead of building one: "
        "no model step runs; its layers must be the lock's (checked)",
    )
    what.add_argument("--base-image", default=DEFAULT_BASE_IMAGE, help=f"base image (default {DEFAULT_BASE_IMAGE})")
    what.add_argument(
        "--context",
        type=Path,
        help="the app's build context, with its Dockerfile (default: where build.py lives); the models image is "
        "always built from modelbake's own tree",
    )


def _where_from(inputs: argparse._ArgumentGroup) -> None:
    inputs.add_argument("--mirror", action="append", metavar="FAMILY=URL", help="base URL per family (repeatable)")
    inputs.add_argument("--ca-bundle", type=Path, help="CA bundle for HTTPS in build steps (a secret, never a layer)")
    inputs.add_argument("--hf-token-file", type=Path, help="file holding a Hugging Face token (a secret)")
    inputs.add_argument("--wheelhouse", type=Path, help="directory of wheels (e.g. the torch CPU wheel)")
    inputs.add_argument(
        "--network",
        choices=NETWORKS,
        help="network of RUN steps (host: a mirror on 127.0.0.1; left out, build.py picks host for the models "
        "build itself when a mirror is on loopback, and says so)",
    )


def _remote_caches(caches: argparse._ArgumentGroup) -> None:
    caches.add_argument(
        "--cache",
        action="append",
        metavar="SPEC",
        help="gha[,scope=PREFIX], local:DIR, registry:REF or a raw type=... spec (repeatable)",
    )
    caches.add_argument(
        "--cache-read-only", action="store_true", help="import from the caches, never export (e.g. PRs)"
    )
    caches.add_argument(
        "--cache-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="a cache that does not answer within this, before the build or while a blob downloads, is dropped "
        "with a warning and the build goes on without it (default 20)",
    )
    caches.add_argument(
        "--cache-compression",
        choices=CACHE_COMPRESSIONS,
        default=None,
        help="compression of the blobs exported to local: and registry: caches (default: each image's layer "
        "compression); the gha exporter takes none: it uploads each layer's own blob",
    )
    caches.add_argument(
        "--models-cache-mode",
        choices=CACHE_MODES,
        default="max",
        help="max (default): the cache keeps every fetch step's layer too; min: the model layers only (half the "
        "bytes; all a restore needs)",
    )
    caches.add_argument(
        "--cache-budget",
        type=float,
        default=10.0,
        metavar="GB",
        help="warn when the gha cache exports would store more than this (default 10: what GitHub includes per "
        "repository; set what you pay for)",
    )


def _layers_and_rebuilds(layers: argparse._ArgumentGroup) -> None:
    layers.add_argument(
        "--layer-compression",
        choices=LAYER_COMPRESSIONS,
        default=DEFAULT_MODEL_LAYER_COMPRESSION,
        help="compression of the models image's layers, forced (default uncompressed: weights barely compress)",
    )
    layers.add_argument(
        "--app-layer-compression",
        choices=LAYER_COMPRESSIONS,
        default=DEFAULT_APP_LAYER_COMPRESSION,
        help="compression of the app image's layers, forced (default uncompressed: its model layers are then the "
        "models image's blobs, shared with every app; zstd shrinks the venv but copies every model blob)",
    )
    layers.add_argument(
        "--source-date-epoch",
        type=int,
        default=0,
        metavar="SECONDS",
        help="time of every file and directory in the model layers and of the models image (default 0)",
    )
    layers.add_argument(
        "--file-layers-over",
        type=_mib_or_off,
        default=DEFAULT_FILE_LAYERS_OVER,
        metavar="MIB",
        help=f"a Hugging Face file larger than this is a layer of its own, keyed by its sha256 (default "
        f"{DEFAULT_FILE_LAYERS_OVER >> 20}; `off`: one layer per model)",
    )
    layers.add_argument(
        "--refresh-models", action="store_true", help="re-run every model's fetch step (ignore its cache)"
    )
    layers.add_argument("--no-cache", action="store_true", help="a cold build: no step from the build cache")


def _builder_and_output(where: argparse._ArgumentGroup) -> None:
    where.add_argument("--push", action="store_true", help="push the images instead of loading them")
    where.add_argument("--builder", help="buildx builder (default: the `docker` driver)")
    where.add_argument("--platform", help="target platform, e.g. linux/amd64")
    where.add_argument("--dry-run", action="store_true", help="print the docker buildx commands, build nothing")
    where.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    where.add_argument(
        "--rawjson",
        type=Path,
        metavar="FILE",
        help="write buildx's progress stream (`--progress rawjson`, one JSON document per line) to FILE, for "
        "profiling a build step by step",
    )
    where.add_argument("--quiet", action="store_true", help="no summary on stdout")


def _mib_or_off(value: str) -> int | None:
    """`--file-layers-over`: MiB (a positive number), or `off`."""
    if value.strip().lower() == "off":
        return None
    try:
        mib = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in MiB or `off`, got {value!r}") from None
    if mib <= 0:
        raise argparse.ArgumentTypeError(f"expected a size in MiB above 0 or `off`, got {value!r}")
    return int(mib * 1024 * 1024)


def options_from(namespace: argparse.Namespace) -> BuildOptions:
    """The parsed command line as `BuildOptions`; a malformed --mirror or --cache value is a UsageError."""
    values = dict(vars(namespace))
    values["mirrors"] = MappingProxyType(parse_mirror_args(values.pop("mirror")))
    values["caches"] = tuple(parse_cache(spec) for spec in values.pop("cache") or ())
    options = BuildOptions(**values)
    if options.models_image and options.models_only:
        raise UsageError(
            "--models-image and --models-only: the first builds an app on a models image, the second only a "
            "models image; pick one"
        )
    return options


def parse_options(argv: Sequence[str] | None = None) -> BuildOptions:
    """argv -> BuildOptions; a bad argument is a UsageError (one `error:` line, exit 2)."""
    return options_from(build_parser().parse_args(argv))


__all__ = [
    "app_tag",
    "models_tag",
    "profile_name",
    "DEFAULT_APP_REPO",
    "DEFAULT_MODELS_REPO",
    "BuildOptions",
    "build_parser",
    "options_from",
    "parse_options",
]
