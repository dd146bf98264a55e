"""`build.py --cache` values -> buildx `--cache-from`/`--cache-to` specs, with scopes per image.

Three backends people use: `gha[,scope=PREFIX]` (the GitHub Actions cache), `local:DIR` and `registry:REF`,
plus any raw `type=...` spec passed through. Each build gets its own scope so the two never evict each other:
the models image is scoped by profile and lock hash (a model change starts a fresh scope by itself, and the
old one ages out), the app image by profile and branch (reading the default branch's scope as a fallback).
Model layers export with `mode=max` (every fetch step is worth keeping); the app with `mode=min`.

Written by hand because buildx has no notion of "the same cache, scoped per image". Which gha protocol the
cache speaks is `ghaenv`'s business (passed here as `version=`), whether a cache answers is `cache.probe`'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

DEFAULT_GHA_PREFIX = "modelbake"
DEFAULT_BRANCH = "main"
# Blob compression of `local` and `registry` cache exports: model weights barely compress (gzip -1 saves ~8%,
# zstd under 1%), and from a registry uncompressed blobs restore fastest, zstd close behind, gzip twice as
# slow and ~24 s per GiB to write (bench/results-cache.md). build.py passes each image's own layer
# compression, so a cache export reuses the blobs the image export wrote; forced, so a layer whose blob has
# another compression is converted rather than uploaded as it is. The gha exporter takes no compression
# option (BuildKit fixes its config to the default): it uploads the blob a layer already has (the image's,
# here) and gzips a layer that has none, such as a fetch step's under mode=max.
CACHE_COMPRESSIONS = ("zstd", "uncompressed", "gzip")
DEFAULT_CACHE_COMPRESSION = "zstd"
CACHE_MODES = ("max", "min")


@dataclass
class CacheBackend:
    """One `--cache` value, parsed."""

    kind: str  # gha / local / registry / raw
    value: str  # prefix (gha), directory (local), reference (registry), the spec itself (raw)
    options: dict[str, str] = field(default_factory=dict)
    gha_version: int = 2  # the protocol ghaenv resolved (gha only): passed to buildx as `version=`

    @property
    def description(self) -> str:
        return {"gha": "GitHub Actions cache", "local": f"local cache {self.value}"}.get(
            self.kind, f"{self.kind} cache {self.value}"
        )


@dataclass
class CacheSpecs:
    """What one build passes to buildx."""

    cache_from: list[str] = field(default_factory=list)
    cache_to: list[str] = field(default_factory=list)


def parse_cache(value: str) -> CacheBackend:
    """`gha`, `gha,scope=ci`, `local:DIR`, `registry:REF` or `type=...`; anything else is a usage error."""
    if value.startswith("type="):
        return CacheBackend("raw", value)
    head, _, rest = value.partition(",")
    if head == "gha":
        options = dict(_pairs(value, rest))
        unknown = set(options) - {"scope", "timeout"}
        if unknown:
            raise UsageError(f"--cache {value!r}: unknown option {sorted(unknown)[0]!r} (gha takes scope=, timeout=)")
        prefix = options.pop("scope", DEFAULT_GHA_PREFIX)
        if not re.fullmatch(r"[A-Za-z0-9._-]+", prefix):
            raise UsageError(f"--cache {value!r}: scope must be letters, digits, '.', '_' or '-'")
        return CacheBackend("gha", prefix, options)
    kind, sep, target = value.partition(":")
    if sep and target and kind == "local":
        return CacheBackend("local", str(Path(target).resolve()))
    if sep and target and kind == "registry":
        return CacheBackend("registry", target)
    raise UsageError(f"--cache {value!r}: expected gha[,scope=PREFIX], local:DIR, registry:REF or type=...")


def _pairs(value: str, rest: str) -> Iterator[tuple[str, str]]:
    for item in filter(None, rest.split(",")):
        key, sep, val = item.partition("=")
        if not sep or not val:
            raise UsageError(f"--cache {value!r}: expected key=value, got {item!r}")
        yield key.strip(), val.strip()


def branch_scope(environ: Mapping[str, str] | None = None) -> str:
    """The branch this build caches the app for: the PR's head, else the ref name, else the default branch."""
    env = os.environ if environ is None else environ
    name = env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or DEFAULT_BRANCH
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or DEFAULT_BRANCH


def specs_for(
    backends: list[CacheBackend],
    build: str,
    profile_name: str,
    lock_hash: str,
    *,
    read_only: bool = False,
    compression: str = DEFAULT_CACHE_COMPRESSION,
    models_mode: str = "max",
    environ: dict[str, str] | None = None,
) -> CacheSpecs:
    """The cache-from/to of one build (`build` is "models" or "app"; `profile_name` the profile as tags name it).

    `models_mode`: "max" (default) also keeps every fetch step's own layer, so a profile that gains a model or
    loses one reuses the others' fetches; "min" keeps only the model layers, which is all a restore needs
    (each `COPY --link` layer's cache key derives from its fetch step's definition, not its result) and halves
    the bytes stored and uploaded. With gha, whose exporter gzips every layer that has no blob yet, "max" also
    gzips the fetch steps' layers on every cold export (bench/results.md). `compression` applies to `local`
    and `registry` exports only (see CACHE_COMPRESSIONS).
    """
    env = os.environ if environ is None else environ
    models = build == "models"
    if models_mode not in CACHE_MODES:
        raise UsageError(f"--models-cache-mode {models_mode!r}: expected one of {', '.join(CACHE_MODES)}")
    mode = models_mode if models else "min"
    if models:
        scopes = [models_scope(profile_name, lock_hash)]
    else:
        branch = branch_scope(env)
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", env.get("GITHUB_BASE_REF") or DEFAULT_BRANCH)
        scopes = [f"app-{profile_name}-{branch}"] + ([f"app-{profile_name}-{base}"] if base != branch else [])
    if compression not in CACHE_COMPRESSIONS:
        raise UsageError(f"--cache-compression {compression!r}: expected one of {', '.join(CACHE_COMPRESSIONS)}")
    packed = f"compression={compression},force-compression=true"
    out = CacheSpecs()
    for backend in backends:
        if backend.kind == "gha":
            # No url= or token=: buildx reads them from the runner's variables (a token in argv would show in
            # every process listing); version= makes ghaenv's choice of protocol BuildKit's too.
            timeout = backend.options.get("timeout", "10m")
            for i, scope in enumerate(scopes):
                common = f"type=gha,scope={gha_scope(backend, scope)},version={backend.gha_version}"
                out.cache_from.append(f"{common},timeout={timeout}")
                if i == 0 and not read_only:
                    out.cache_to.append(f"{common},mode={mode},ignore-error=true,timeout={timeout}")
        elif backend.kind == "local":
            path = f"{backend.value}/{scopes[0]}"
            out.cache_from.append(f"type=local,src={path}")
            if not read_only:
                out.cache_to.append(f"type=local,dest={path},mode={mode},{packed},ignore-error=true")
        elif backend.kind == "registry":
            for i, scope in enumerate(scopes):
                ref = f"{backend.value}:{scope}" if _has_no_tag(backend.value) else f"{backend.value}-{scope}"
                out.cache_from.append(f"type=registry,ref={ref}")
                if i == 0 and not read_only:
                    out.cache_to.append(
                        f"type=registry,ref={ref},mode={mode},{packed},ignore-error=true,image-manifest=true"
                    )
        else:
            out.cache_from.append(backend.value)
            if not read_only:
                out.cache_to.append(backend.value)
    return out


def gha_scope(backend: CacheBackend, scope: str) -> str:
    """The gha `scope=` of one image's cache: the user's prefix, then the image's scope."""
    return f"{backend.value}-{scope}"


def models_scope(profile_name: str, lock_hash: str) -> str:
    """The models image's scope: by profile and lock hash."""
    return f"models-{profile_name}-{lock_hash}"


def _has_no_tag(ref: str) -> bool:
    """`host:5000/cache` has no tag; `host:5000/cache:v1` has one (a port is not a tag)."""
    last = ref.rsplit("/", 1)[-1]
    return ":" not in last and "@" not in last


__all__ = [
    "CacheBackend",
    "CacheSpecs",
    "branch_scope",
    "parse_cache",
    "specs_for",
]
