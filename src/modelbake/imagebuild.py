"""`python build.py`: manifest + lock -> models image (one layer per model) -> app image, with a report.

Two `docker buildx build` runs: the models image (`Dockerfile.models`, target `models`, tagged with the
profile and lock hash) and the app image on it (`--build-arg MODELS_IMAGE=<that tag>`), exactly what a person
runs with plain Docker. Mirrors, the CA bundle and the HF token enter as BuildKit secrets only, so they never
reach a layer, the history, the config or a cache key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from .buildx import (
    LAYER_COMPRESSIONS,
    BuildResult,
    BuildSpec,
    build_argv,
    print_argv,
    run_build,
)
from .cachebudget import budget_warning, footprint
from .cacheprobe import usable_backends
from .cachespec import CACHE_COMPRESSIONS, CACHE_MODES, CacheBackend, models_scope, parse_cache, specs_for
from .dockerfile import DEFAULT_BASE_IMAGE, render_app_dockerfile, render_models_dockerfile, stage_name
from .errors import LockError, UsageError, exit_code_of
from .ghaenv import resolve as resolve_gha
from .lockfile import Lock, check_drift, lock_hash, read_lock
from .manifest import Manifest, load_manifest
from .mirrors import parse_mirror_args
from .report import (
    Report,
    StageSummary,
    cache_traffic,
    find_model_layers,
    format_markdown,
    format_summary,
    image_info,
    stage_summaries,
)

DEFAULT_MODELS_REPO = "modelbake/models"
DEFAULT_APP_REPO = "modelbake/app"
# Layer compression, from bench/results.md (real-size models, 2 cores): weights barely compress (gzip -1 and
# zstd -3 both save ~8%) while gzip costs ~24 s per GiB to write and ~10 s per GiB to unpack. The models image
# is uncompressed and forced (the blob IS the diff: nothing to compress, nothing to decompress on restore, and
# the cache exports reuse the same blobs); the app image's layers are zstd, which keeps its venv small for a
# push at ~2 s per GiB of model layers. Forced there too, or a layer the build cache already held with a gzip
# blob would keep it and the image's compression would depend on the engine's history (BuildKit keeps the
# converted blob, so only the first export of a layer pays).
DEFAULT_MODEL_LAYER_COMPRESSION = "uncompressed"
DEFAULT_APP_LAYER_COMPRESSION = "zstd"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="build.py",
        description="Build the models image (one layer per model) and the app image on it with docker buildx.",
    )
    p.add_argument("--manifest", type=Path, help="manifest (default: models.toml beside build.py)")
    p.add_argument("--profile", help="profile of the manifest (default: every model)")
    p.add_argument("--models-only", action="store_true", help="build and tag only the models image")
    p.add_argument("--tag", help="app image tag (default modelbake/app:<profile>)")
    p.add_argument("--models-tag", help="models image tag (default modelbake/models:<profile>-<lock hash>)")
    p.add_argument("--base-image", default=DEFAULT_BASE_IMAGE, help=f"base image (default {DEFAULT_BASE_IMAGE})")
    p.add_argument("--mirror", action="append", metavar="FAMILY=URL", help="base URL per family (repeatable)")
    p.add_argument("--ca-bundle", type=Path, help="CA bundle for HTTPS in build steps (a secret, never a layer)")
    p.add_argument("--hf-token-file", type=Path, help="file holding a Hugging Face token (a secret)")
    p.add_argument("--wheelhouse", type=Path, help="directory of wheels (e.g. the torch CPU wheel)")
    p.add_argument(
        "--cache",
        action="append",
        metavar="SPEC",
        help="gha[,scope=PREFIX], local:DIR, registry:REF or a raw type=... spec (repeatable)",
    )
    p.add_argument("--cache-read-only", action="store_true", help="import from the caches, never export (e.g. PRs)")
    p.add_argument(
        "--cache-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="a cache that does not answer within this, before the build or while a blob downloads, is dropped "
        "with a warning and the build goes on without it (default 20)",
    )
    p.add_argument(
        "--cache-compression",
        choices=CACHE_COMPRESSIONS,
        default=None,
        help="compression of the blobs exported to local: and registry: caches (default: each image's layer "
        "compression); the gha exporter takes none: it uploads each layer's own blob",
    )
    p.add_argument(
        "--models-cache-mode",
        choices=CACHE_MODES,
        default="max",
        help="max (default): the cache keeps every fetch step's layer too; min: the model layers only (half the "
        "bytes; all a restore needs)",
    )
    p.add_argument(
        "--layer-compression",
        choices=LAYER_COMPRESSIONS,
        default=DEFAULT_MODEL_LAYER_COMPRESSION,
        help="compression of the models image's layers, forced (default uncompressed: weights barely compress)",
    )
    p.add_argument(
        "--app-layer-compression",
        choices=LAYER_COMPRESSIONS,
        default=DEFAULT_APP_LAYER_COMPRESSION,
        help="compression of the app image's layers, forced (default zstd, OCI media types)",
    )
    p.add_argument(
        "--cache-budget",
        type=float,
        default=10.0,
        metavar="GB",
        help="warn when the gha cache exports would store more than this (default 10: what GitHub includes per "
        "repository; set what you pay for)",
    )
    p.add_argument(
        "--source-date-epoch",
        type=int,
        default=0,
        metavar="SECONDS",
        help="time of every file and directory in the model layers and of the models image (default 0)",
    )
    p.add_argument("--refresh-models", action="store_true", help="re-run every model's fetch step (ignore its cache)")
    p.add_argument("--no-cache", action="store_true", help="a cold build: no step from the build cache")
    p.add_argument("--push", action="store_true", help="push the images instead of loading them")
    p.add_argument("--builder", help="buildx builder (default: the `docker` driver)")
    p.add_argument("--platform", help="target platform, e.g. linux/amd64")
    p.add_argument(
        "--network", choices=("default", "host", "none"), help="network of RUN steps (host: loopback mirror)"
    )
    p.add_argument("--context", type=Path, help="build context: the repository (default: where build.py lives)")
    p.add_argument("--dry-run", action="store_true", help="print the docker buildx commands, build nothing")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")
    return p


@dataclass
class Plan:
    manifest: Manifest
    lock: Lock | None
    profile: str | None
    models_tag: str
    app_tag: str
    models: BuildSpec
    app: BuildSpec | None
    caches: list[CacheBackend]
    warnings: list[str]
    # The models image's tag names the lock hash, and its content is exactly the locked files: when that image
    # is already here (and nothing asks for a cache export, a refresh, a push or another builder), building it
    # again could only give the same layers, so the app build starts at once.
    models_reusable: bool = False
    gha_version: int | None = None  # the Actions cache protocol the build speaks, when --cache gha


def make_plan(args: argparse.Namespace, root: Path, work: Path) -> Plan:
    """Everything both builds need, with generated files written under `work` (a temp dir)."""
    context = (args.context or root).resolve()
    manifest_path = (args.manifest or context / "models.toml").resolve()
    manifest = load_manifest(manifest_path)
    specs = manifest.select(args.profile)
    lock = read_lock(manifest.lock_path)
    if lock is not None:
        drift = check_drift(manifest, lock, [s.id for s in specs])
        if drift:
            raise LockError(f"{manifest.lock_path}: out of date: {drift[0]}", hint="run `modelbake lock`")
        pin = lock_hash(manifest.lock_path)
    else:
        print(
            f"warning: {manifest.lock_path} missing: models are fetched unpinned; run `modelbake lock`", file=sys.stderr
        )
        pin = "unlocked-" + hashlib.sha256(manifest_path.read_bytes()).hexdigest()[:12]
    label = args.profile or "all"
    models_tag = args.models_tag or f"{DEFAULT_MODELS_REPO}:{label}-{pin}"
    app_tag = args.tag or f"{DEFAULT_APP_REPO}:{label}"

    # Dockerfile.models: the committed one when it is what this manifest/profile gives, else generated.
    models_text = render_models_dockerfile(manifest, lock, args.profile)
    models_df = context / "Dockerfile.models"
    if not models_df.is_file() or models_df.read_text() != models_text:
        models_df = work / "Dockerfile.models"
        models_df.write_text(models_text)
    app_df = context / "Dockerfile"
    app_text = render_app_dockerfile(app_df.read_text(), manifest, lock, args.profile)
    if app_df.read_text() != app_text:
        app_df = work / "Dockerfile"
        app_df.write_text(app_text)

    secrets: dict[str, Path] = {}
    if args.ca_bundle:
        secrets["ca"] = _existing(args.ca_bundle, "--ca-bundle")
    mirrors = {**manifest.mirrors, **parse_mirror_args(args.mirror)}
    if mirrors:
        # A secret, not a build arg: a mirror's address must never change a layer's cache key.
        mirrors_file = work / "mirrors.toml"
        mirrors_file.write_text("[mirrors]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in sorted(mirrors.items())))
        secrets["mirrors"] = mirrors_file
    model_secrets = dict(secrets)
    if args.hf_token_file:
        model_secrets["hf_token"] = _existing(args.hf_token_file, "--hf-token-file")

    network = None if args.network in (None, "default") else args.network
    backends = [parse_cache(value) for value in args.cache or []]
    warnings: list[str] = []
    gha_version = None
    if any(b.kind == "gha" for b in backends):
        target = resolve_gha()  # the protocol buildx + BuildKit will speak, or a UsageError where they'd skip it
        gha_version = target.version
        for backend in backends:
            backend.gha_version = target.version
        if target.version == 1 and os.environ.get("GITHUB_SERVER_URL", "") == "https://github.com":
            warnings.append(
                "GitHub.com serves only the cache v2 protocol (v1 was shut down on 2025-04-15): set "
                "ACTIONS_CACHE_SERVICE_V2=true for the step, as hosted runners do"
            )
    if not args.dry_run:
        backends = usable_backends(
            backends, args.cache_timeout, models_scope(label, pin), warn=warnings.append
        )
    # Cache blobs default to the image's own layer compression, so the cache export uploads the blobs the
    # image export just wrote instead of recompressing every layer into a second copy.
    models_cache = specs_for(
        backends,
        "models",
        label,
        pin,
        read_only=args.cache_read_only,
        compression=args.cache_compression or args.layer_compression,
        models_mode=args.models_cache_mode,
    )
    # The fetch steps stamp every file and directory of a model layer with this time, and BuildKit uses it for
    # the image's created time and history: two cold builds of one lock give the same layers and image.
    models_args = {"BASE_IMAGE": args.base_image, "SOURCE_DATE_EPOCH": str(args.source_date_epoch)}
    models = BuildSpec(
        context=context,
        dockerfile=models_df,
        target="models",
        tags=[models_tag],
        build_args=models_args,
        secrets=model_secrets,
        cache_from=models_cache.cache_from,
        cache_to=models_cache.cache_to,
        network=network,
        no_cache_filter=[stage_name(s.id) for s in specs] if args.refresh_models else [],
        no_cache=args.no_cache,
        builder=args.builder,
        platform=args.platform,
        push=args.push,
        layer_compression=args.layer_compression,
        force_compression=True,
        label="models",
        stall_seconds=args.cache_timeout if backends else None,
    )
    app = None
    if not args.models_only:
        contexts = {}
        if args.wheelhouse:
            contexts["wheels"] = str(_existing(args.wheelhouse, "--wheelhouse", directory=True))
        if manifest_path != context / "models.toml":
            staged = work / "manifest"
            staged.mkdir()
            shutil.copyfile(manifest_path, staged / "models.toml")
            if manifest.lock_path.is_file():
                shutil.copyfile(manifest.lock_path, staged / "models.lock")
            contexts["manifest"] = str(staged)
        app_cache = specs_for(
        backends,
        "app",
        label,
        pin,
        read_only=args.cache_read_only,
        compression=args.cache_compression or args.app_layer_compression,
    )
        app = BuildSpec(
            context=context,
            dockerfile=app_df,
            target="app",
            tags=[app_tag],
            build_args={
                "BASE_IMAGE": args.base_image,
                "MODELS_IMAGE": models_tag,
                "MODELBAKE_PROFILE": args.profile or "",
            },
            build_contexts=contexts,
            secrets={k: v for k, v in secrets.items() if k == "ca"},
            cache_from=app_cache.cache_from,
            cache_to=app_cache.cache_to,
            network=network,
            no_cache=args.no_cache,
            builder=args.builder,
            platform=args.platform,
            push=args.push,
            layer_compression=args.app_layer_compression,
            force_compression=True,
            label="app",
            stall_seconds=args.cache_timeout if backends else None,
        )
    reusable = (
        args.models_tag is None
        and lock is not None
        and args.layer_compression == DEFAULT_MODEL_LAYER_COMPRESSION  # the engine cannot show a layer's compression
        and not (args.cache or args.refresh_models or args.no_cache or args.push or args.builder or args.platform)
    )
    return Plan(
        manifest, lock, args.profile, models_tag, app_tag, models, app, backends, warnings, reusable, gha_version
    )


def _existing(path: Path, option: str, directory: bool = False) -> Path:
    path = path.resolve()
    if not (path.is_dir() if directory else path.is_file()):
        raise UsageError(f"{option} {path}: no such {'directory' if directory else 'file'}")
    return path


def run(args: argparse.Namespace, root: Path) -> int:
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelbake-build-")))
        plan = make_plan(args, root, work)
        if args.dry_run:
            for spec in (plan.models, plan.app):
                if spec is not None:
                    print_argv([str(a) for a in build_argv(spec, Path("METADATA.json"))])
            return 0

        from .engine import check_engine, docker_client

        client = docker_client()
        check_engine(
            client,
            need_containerd_store=bool(args.cache) and not args.builder,
            gha_version=plan.gha_version if any(b.kind == "gha" for b in plan.caches) else None,
            builder=args.builder,
        )
        report = Report(warnings=list(plan.warnings))
        started = time.perf_counter()
        results: list[tuple[str, BuildResult]] = []
        _say(args, f"building models image {plan.models_tag} ({len(plan.manifest.select(plan.profile))} models)")
        local_growth: dict[str, int] = {}
        if plan.models_reusable and _is_current(client, plan.models_tag, args.source_date_epoch):
            _say(
                args, f"models image {plan.models_tag} is up to date with the lock: not rebuilt (--refresh-models does)"
            )
            report.durations["models build"] = 0.0
        else:
            local_before = _local_cache_bytes(plan.caches)
            result = run_build(plan.models)
            local_growth["models"] = _local_cache_bytes(plan.caches) - local_before
            results.append(("models", result))
            report.durations["models build"] = round(result.seconds, 1)
        if plan.app is not None:
            _say(args, f"building app image {plan.app_tag}")
            local_before = _local_cache_bytes(plan.caches)
            result = run_build(plan.app)
            local_growth["app"] = _local_cache_bytes(plan.caches) - local_before
            results.append(("app", result))
            report.durations["app build"] = round(result.seconds, 1)
        report.durations["total"] = round(time.perf_counter() - started, 1)
        for label, result in results:
            report.stages += stage_summaries(label, result)
            traffic = cache_traffic(label, result)
            for entry in traffic:
                # BuildKit reports no sizes for a local cache export: the directory's growth is the bytes written.
                if entry.direction == "export" and not entry.bytes and "client directory" in entry.step:
                    entry.bytes = local_growth.get(label, 0)
            report.caches += traffic
        _inspect(client, plan, report)
        if any(b.kind == "gha" for b in plan.caches) and not args.cache_read_only:
            found = footprint(report, args.models_cache_mode)
            report.gha_cache_bytes = {"models": found.models, "app": found.app, "total": found.total}
            budget = budget_warning(found, args.cache_budget * 1e9)
            if budget:
                report.warnings.append(budget)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        if args.json:
            report.write_json(args.json)
        _write_step_summary(report)
        if not args.quiet:
            print(format_summary(report))
    return 0


def _is_current(client, tag: str, epoch: int) -> bool:
    """The image exists and was built with this SOURCE_DATE_EPOCH (its created time)."""
    from datetime import datetime

    from docker.errors import ImageNotFound

    try:
        created = client.images.get(tag).attrs.get("Created") or ""
    except ImageNotFound:
        return False
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() == epoch
    except ValueError:
        return False


def _local_cache_bytes(caches: list[CacheBackend]) -> int:
    total = 0
    for backend in caches:
        if backend.kind == "local" and Path(backend.value).is_dir():
            total += sum(f.stat().st_size for f in Path(backend.value).rglob("*") if f.is_file())
    return total


def _write_step_summary(report: Report) -> None:
    """Append the Markdown summary to `$GITHUB_STEP_SUMMARY` when GitHub Actions provides one."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as stream:
            stream.write(format_markdown(report))


def _inspect(client, plan: Plan, report: Report) -> None:
    """Image sizes and each model's layer, from the engine's image store.

    Pushed images are there too with the `docker` driver and the containerd image store; with another builder
    a pushed image may exist only in the registry, and the report then has no image part.
    """
    from docker.errors import ImageNotFound

    specs = plan.manifest.select(plan.profile)
    files_bytes = {s.id: plan.lock.models[s.id].total_bytes for s in specs if plan.lock and s.id in plan.lock.models}
    try:
        models_image = client.images.get(plan.models_tag)
        final = client.images.get(plan.app_tag) if plan.app is not None else models_image
    except ImageNotFound:
        report.warnings.append("the built images are not in the engine (pushed only): no layer report")
        return
    report.models_image = image_info(models_image)
    report.image = image_info(final)
    report.image.tag = plan.app_tag if plan.app is not None else plan.models_tag
    report.models_image.tag = plan.models_tag
    report.models = find_model_layers(final, specs, files_bytes)
    in_models_image = {m.id: m.layer for m in find_model_layers(models_image, specs)}
    for layer in report.models:
        layer.models_image_layer = in_models_image.get(layer.id)
    status = {s.stage: s.status for s in report.stages if s.build == "models"}
    for layer in report.models:
        step = status.get(stage_name(layer.id))
        layer.step = {"built": "fetched", "cached": "cached"}.get(step or "", "cached")


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"build.py: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Entry point of build.py; the one place errors become a line and an exit code."""
    args = build_parser().parse_args(argv)
    root = root or Path.cwd()
    return exit_code_of(lambda: run(args, root))


__all__ = ["StageSummary", "build_parser", "main", "make_plan"]
