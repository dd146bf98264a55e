"""What build.py will run, decided without side effects: `make_plan(options, root, work, environ) -> Plan`.

Planning reads its inputs (the manifest, the lock, the committed Dockerfiles, the environment it is handed) and
nothing else: no network, no file written, nothing printed. The files the builds need (generated Dockerfiles,
the mirrors secret, the staged manifest) are listed in `Plan.files` under `work`, a directory planning never
touches, and written by `materialize`; warnings and notes are returned for the caller to print. So a plan can be
made and checked in a unit test, and a dry run writes nothing at all.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from .buildoptions import DEFAULT_APP_REPO, DEFAULT_MODEL_LAYER_COMPRESSION, DEFAULT_MODELS_REPO, BuildOptions
from .buildx import BuildSpec
from .cachespec import CacheBackend, models_scope, specs_for
from .constants import FAMILIES, MIRROR_ENV_PREFIX, MIRRORS_FILE_ENV
from .digests import sha256_file
from .dockerfile import render_app_dockerfile, render_models_dockerfile
from .errors import UsageError, write_error
from .ghaenv import resolve as resolve_gha
from .layers import Layer, plan_layers
from .lockfile import Lock, lock_hash, read_lock
from .manifest import Manifest, load_manifest
from .preload import plan_from_manifest


@dataclass(frozen=True)
class Plan:
    manifest: Manifest
    lock: Lock | None
    profile: str | None
    models_tag: str
    app_tag: str
    models: BuildSpec
    app: BuildSpec | None
    caches: tuple[CacheBackend, ...]
    warnings: tuple[str, ...] = ()
    # One-line notes on choices build.py made for the user (the host network for a loopback mirror).
    notes: tuple[str, ...] = ()
    # The models image's tag names the lock hash, and its content is exactly the locked files: when that image
    # is already here (and nothing asks for a cache export, a refresh, a push or another builder), building it
    # again could only give the same layers, so the app build starts at once.
    models_reusable: bool = False
    gha_version: int | None = None  # the Actions cache protocol the build speaks, when --cache gha
    models_scope: str = ""  # the models image's cache scope (the gha probe looks up its index)
    work: Path = Path()  # where the files below go; planning never touches it
    files: Mapping[Path, bytes] = field(default_factory=dict)  # what `materialize` writes before a build
    layers: tuple[Layer, ...] = ()  # the models image's layers, bottom to top (layers.plan_layers)
    split_bytes: int | None = None  # the file-layer threshold the Dockerfiles were written with
    lock_hash: str = ""  # the models image's `org.modelbake.lock-hash` label
    models_image: str | None = None  # --models-image: the app is built on it, no models target


def make_plan(
    options: BuildOptions,
    root: Path,
    work: Path,
    environ: Mapping[str, str],
    caches: Sequence[CacheBackend] | None = None,
) -> Plan:
    """Both builds' specs, from the options, the files they name and `environ` (read for gha and the branch).

    `caches`: the backends to use, when a probe dropped some (default: every `--cache`). Raises the project's
    typed errors for bad input: a stale lock, a missing --ca-bundle, a mirror the build cannot reach.
    """
    # The app's context is the user's (--context); the models image is always built from modelbake's own tree
    # (where build.py lives): its fetch stage copies modelbake's fetch code from there.
    context = (options.context or root).resolve()
    source = root.resolve()
    manifest_path = (options.manifest or context / "models.toml").resolve()
    manifest = load_manifest(manifest_path)
    specs = manifest.select(options.profile)
    lock = read_lock(manifest.lock_path)
    plan_from_manifest(manifest, lock, specs)  # preload's own drift check: the same error, the same words
    warnings: list[str] = []
    if lock is not None:
        pin = lock_hash(manifest.lock_path)
    else:
        warnings.append(f"{manifest.lock_path} missing: models are fetched unpinned; run `modelbake lock`")
        pin = "unlocked-" + sha256_file(manifest_path)[:12]
    label = options.profile or "all"
    if options.models_image and options.models_only:
        raise UsageError(
            "--models-image and --models-only: the first builds an app on a models image, the second "
            "only a models image; pick one"
        )
    models_tag = options.models_image or options.models_tag or f"{DEFAULT_MODELS_REPO}:{label}-{pin}"
    app_tag = options.tag or f"{DEFAULT_APP_REPO}:{label}"
    files: dict[Path, bytes] = {}

    # Dockerfile.models: the committed one when it is what this manifest/profile gives, else generated.
    models_text = render_models_dockerfile(manifest, lock, options.profile, options.split_bytes)
    models_df = source / "Dockerfile.models"
    if not models_df.is_file() or models_df.read_text() != models_text:
        models_df = work / "Dockerfile.models"
        files[models_df] = models_text.encode()
    app_df = context / "Dockerfile"
    app_text = render_app_dockerfile(app_df.read_text(), manifest, lock, options.profile, options.split_bytes)
    if app_df.read_text() != app_text:
        app_df = work / "Dockerfile"
        files[app_df] = app_text.encode()

    secrets: dict[str, Path] = {}
    if options.ca_bundle:
        secrets["ca"] = _existing(options.ca_bundle, "--ca-bundle")
    mirrors = {**manifest.mirrors, **options.mirrors}
    if mirrors:
        # A secret, not a build arg: a mirror's address must never change a layer's cache key.
        secrets["mirrors"] = work / "mirrors.toml"
        text = "[mirrors]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in sorted(mirrors.items()))
        files[secrets["mirrors"]] = text.encode()
    warnings += unforwarded_mirrors(mirrors, environ)
    model_secrets = dict(secrets)
    layers = plan_layers(specs, lock, options.split_bytes)
    if lock is not None and any(layer.file is not None for layer in layers):
        # A big file's own step reads where to fetch it from the lock: as a secret, so a new revision that keeps
        # the file keeps the step (see dockerfile.LOCK_MOUNT).
        model_secrets["lock"] = manifest.lock_path
    if options.hf_token_file:
        model_secrets["hf_token"] = _existing(options.hf_token_file, "--hf-token-file")
    network = choose_network(options, mirrors, environ)

    backends = list(options.caches if caches is None else caches)
    gha_version = None
    if any(b.kind == "gha" for b in backends):
        target = resolve_gha(environ)  # the protocol buildx + BuildKit will speak, or a UsageError where they'd skip it
        gha_version = target.version
        backends = [replace(b, gha_version=target.version) if b.kind == "gha" else b for b in backends]
        if target.version == 1 and environ.get("GITHUB_SERVER_URL", "") == "https://github.com":
            warnings.append(
                "GitHub.com serves only the cache v2 protocol (v1 was shut down on 2025-04-15): set "
                "ACTIONS_CACHE_SERVICE_V2=true for the step, as hosted runners do"
            )
    # Cache blobs default to the image's own layer compression, so the cache export uploads the blobs the
    # image export just wrote instead of recompressing every layer into a second copy.
    models_cache = specs_for(
        backends,
        "models",
        label,
        pin,
        read_only=options.cache_read_only,
        compression=options.cache_compression or options.layer_compression,
        models_mode=options.models_cache_mode,
        environ=dict(environ),
    )
    # What both builds take from the command line alike.
    build_spec = partial(
        BuildSpec,
        no_cache=options.no_cache,
        builder=options.builder,
        platform=options.platform,
        push=options.push,
        force_compression=True,
        stall_seconds=options.cache_timeout if backends else None,
    )
    # The fetch steps stamp every file and directory of a model layer with this time, and BuildKit uses it for
    # the image's created time and history: two cold builds of one lock give the same layers and image.
    models = build_spec(
        context=source,
        dockerfile=models_df,
        target="models",
        tags=[models_tag],
        build_args={
            "BASE_IMAGE": options.base_image,
            "SOURCE_DATE_EPOCH": str(options.source_date_epoch),
            "MODELBAKE_LOCK_HASH": pin,  # a label of the models image, so --models-image can check it
        },
        secrets=model_secrets,
        cache_from=models_cache.cache_from,
        cache_to=models_cache.cache_to,
        network=network.models,
        no_cache_filter=list(dict.fromkeys(layer.stage for layer in layers)) if options.refresh_models else [],
        layer_compression=options.layer_compression,
        label="models",
    )
    app = None
    if not options.models_only:
        contexts = {}
        if options.wheelhouse:
            contexts["wheels"] = str(_existing(options.wheelhouse, "--wheelhouse", directory=True))
        if manifest_path != context / "models.toml":
            staged = work / "manifest"
            files[staged / "models.toml"] = manifest_path.read_bytes()
            if lock is not None:
                files[staged / "models.lock"] = manifest.lock_path.read_bytes()
            contexts["manifest"] = str(staged)
        app_cache = specs_for(
            backends,
            "app",
            label,
            pin,
            read_only=options.cache_read_only,
            compression=options.cache_compression or options.app_layer_compression,
            environ=dict(environ),
        )
        app = build_spec(
            context=context,
            dockerfile=app_df,
            target="app",
            tags=[app_tag],
            build_args={
                "BASE_IMAGE": options.base_image,
                "MODELS_IMAGE": models_tag,
                "MODELBAKE_PROFILE": options.profile or "",
            },
            build_contexts=contexts,
            secrets={k: v for k, v in secrets.items() if k == "ca"},
            cache_from=app_cache.cache_from,
            cache_to=app_cache.cache_to,
            network=network.app,
            layer_compression=options.app_layer_compression,
            label="app",
        )
    reusable = (
        options.models_tag is None
        and options.models_image is None
        and lock is not None
        and options.layer_compression == DEFAULT_MODEL_LAYER_COMPRESSION  # the engine cannot show a layer's compression
        and not (
            options.caches
            or options.refresh_models
            or options.no_cache
            or options.push
            or options.builder
            or options.platform
        )
    )
    return Plan(
        manifest=manifest,
        lock=lock,
        profile=options.profile,
        models_tag=models_tag,
        app_tag=app_tag,
        models=models,
        app=app,
        caches=tuple(backends),
        warnings=tuple(warnings),
        notes=(network.note,) if network.note else (),
        models_reusable=reusable,
        gha_version=gha_version,
        models_scope=models_scope(label, pin),
        work=work,
        files=files,
        layers=tuple(layers),
        split_bytes=options.split_bytes,
        lock_hash=pin,
        models_image=options.models_image,
    )


def bake_targets(plan: Plan, models_present: bool = False) -> dict[str, BuildSpec]:
    """The bake targets of this plan: the models target and the app on it, in one graph.

    The app's `models` stage is the models target (`target:models`), unless there is no models target: a
    `--models-image`, or (`models_present`) a models image already in the engine that is up to date with the
    lock; then it is that image (`docker-image://`), read by BuildKit like any base image.
    """
    targets: dict[str, BuildSpec] = {}
    if not (plan.models_image or models_present):
        targets["models"] = plan.models
    if plan.app is not None:
        source = "target:models" if "models" in targets else f"docker-image://{plan.models_tag}"
        targets["app"] = replace(plan.app, build_contexts={**plan.app.build_contexts, "models": source})
    return targets


def materialize(plan: Plan) -> None:
    """Write the plan's files (under its work directory) before a build: the one write step of planning."""
    for path, data in plan.files.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise write_error(exc, path) from exc


@dataclass(frozen=True)
class NetworkChoice:
    """The `--network` of each build, and the line that says so when build.py chose it."""

    models: str | None
    app: str | None
    note: str | None = None


def choose_network(options: BuildOptions, mirrors: Mapping[str, str], environ: Mapping[str, str]) -> NetworkChoice:
    """Host networking for the models build when a mirror is on this machine's loopback, or a UsageError at once.

    A build step has a network namespace of its own: 127.0.0.1 there is the step's own loopback, so a mirror
    on the client's loopback answers "Connection refused" after every retry of every file. Only the host
    network reaches it, and only when the build runs on this machine's engine.

    Without `--network`, build.py uses the host network itself for the models build and says so in one line,
    rather than stopping: the user has already said where the models come from, the host network is the one
    way the fetch steps reach that address, and the alternative (stop, tell them to add `--network host`)
    asks for a flag whose only possible value is that one. The app build keeps the default network (it
    fetches no model), so its layers' cache keys do not move. build.py stops at once with a hint instead
    where the host network cannot help or was refused: `--network default` given explicitly, a `--builder`
    (another BuildKit, possibly on another machine or in a container: build.py does not switch it to host
    networking), or `DOCKER_HOST` naming another machine's engine. `--network host` and `--network none`
    are taken as they are.
    """
    given = options.network
    base = None if given in (None, "default") else given
    local = {family: url for family, url in sorted(mirrors.items()) if is_loopback_url(url)}
    if given in ("host", "none") or not local:
        return NetworkChoice(base, base)
    family, url = next(iter(local.items()))
    where = f"the {family} mirror {url} is on this machine's loopback"
    if given == "default":
        raise UsageError(
            f"--network default: {where}, which build steps reach only on the host network",
            hint="pass --network host, or leave --network out and build.py uses the host network for the models build",
        )
    if options.builder:
        raise UsageError(
            f"--builder {options.builder}: {where}, which another builder's steps cannot reach",
            hint="serve the mirror on an address that builder reaches and pass it as --mirror, or pass --network "
            "host if the builder runs on this machine with host networking",
        )
    docker_host = environ.get("DOCKER_HOST", "")
    if docker_host and not docker_host.startswith("unix://") and not is_loopback_url(docker_host):
        raise UsageError(
            f"DOCKER_HOST={docker_host}: {where}, which that engine's build steps cannot reach",
            hint="serve the mirror on an address that engine reaches and pass it as --mirror, or build on this "
            "machine's engine",
        )
    note = f"the models build runs with --network host: {where}, which build steps reach only on the host network"
    return NetworkChoice("host", None, note)


def is_loopback_url(url: str) -> bool:
    """Whether `url` names this machine itself: 127.0.0.0/8, ::1 (also IPv4-mapped), 0.0.0.0, localhost."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or address.is_unspecified or bool(mapped and mapped.is_loopback)


def unforwarded_mirrors(mirrors: Mapping[str, str], environ: Mapping[str, str]) -> list[str]:
    """A warning per mirror variable of this shell that the build steps will not see.

    `modelbake preload` honours MODELBAKE_MIRROR_<FAMILY>, HF_ENDPOINT and MODELBAKE_MIRRORS_FILE; build steps
    get only the mirrors secret build.py writes (--mirror and the manifest's [mirrors]), so a variable set
    here and not matched there would quietly send the build to another server.
    """
    names = [MIRROR_ENV_PREFIX + family.upper() for family in FAMILIES] + ["HF_ENDPOINT", MIRRORS_FILE_ENV]
    found = []
    for name in names:
        value = environ.get(name)
        family = name.removeprefix(MIRROR_ENV_PREFIX).lower() if name.startswith(MIRROR_ENV_PREFIX) else None
        family = "huggingface" if name == "HF_ENDPOINT" else family
        if value and (family is None or mirrors.get(family) != value.rstrip("/")):
            found.append(name)
    if not found:
        return []
    return [
        f"{', '.join(found)} set here, but build steps get only --mirror and the manifest's [mirrors]: "
        "pass the mirror as --mirror FAMILY=URL"
    ]


def _existing(path: Path, option: str, directory: bool = False) -> Path:
    path = path.resolve()
    if not (path.is_dir() if directory else path.is_file()):
        raise UsageError(f"{option} {path}: no such {'directory' if directory else 'file'}")
    return path


__all__ = ["NetworkChoice", "Plan", "choose_network", "is_loopback_url", "make_plan", "materialize"]
