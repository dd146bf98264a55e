"""The `modelbake` command. `main(argv) -> int`; the one place errors become a line and an exit code."""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from . import __version__
from .errors import UsageError, exit_code_of

DEFAULT_MANIFEST = "models.toml"


def _manifest_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--manifest",
        type=Path,
        default=Path(os.environ.get("MODELBAKE_MANIFEST", DEFAULT_MANIFEST)),
        help="manifest file (default: models.toml, or $MODELBAKE_MANIFEST)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelbake", description=__doc__)
    parser.add_argument("--version", action="version", version=f"modelbake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("lock", help="pin every model of the manifest (revisions, sizes, sha256s) into the lock")
    _manifest_arg(p)
    p.add_argument("--mirror", action="append", metavar="FAMILY=URL", help="base URL per family (repeatable)")
    p.add_argument("--hf-token-file", type=Path, help="file holding a Hugging Face token")
    p.add_argument("--check", action="store_true", help="exit 1 if the lock is missing or out of date; no network")

    p = sub.add_parser("preload", help="download and verify models into the usual caches or --dest DIR")
    _manifest_arg(p)
    p.add_argument("--profile", help="profile of the manifest (default: every model)")
    p.add_argument("--model", action="append", metavar="ID", help="only this model id (repeatable)")
    p.add_argument("--dest", type=Path, help="write the image layout here instead of the libraries' caches")
    p.add_argument("--mirror", action="append", metavar="FAMILY=URL", help="base URL per family (repeatable)")
    p.add_argument("--jobs", type=int, default=4, help="parallel downloads (default 4)")
    p.add_argument("--hf-token-file", type=Path, help="file holding a Hugging Face token")
    p.add_argument(
        "--entry",
        metavar="FILE",
        help="fetch the single lock entry in FILE ('-' for stdin) without a manifest (used by Dockerfile.models)",
    )

    p = sub.add_parser("verify", help="load every model offline with the real loaders and run a smoke inference")
    _manifest_arg(p)
    p.add_argument("--profile", help="profile of the manifest (default: every model)")
    p.add_argument("--model", action="append", metavar="ID", help="only this model id (repeatable)")
    p.add_argument("--models", type=Path, help="a --dest tree (default: the libraries' caches)")

    p = sub.add_parser("clean-cache", help="remove the manifest's models from the caches (or empty --dest DIR)")
    _manifest_arg(p)
    p.add_argument("--profile", help="profile of the manifest (default: every model)")
    p.add_argument("--dest", type=Path, help="a --dest tree to empty instead of the caches")

    p = sub.add_parser("mirror", help="serve a directory of models over the hubs' protocols")
    msub = p.add_subparsers(dest="mirror_command", required=True)
    s = msub.add_parser("serve", help="serve DIR on 127.0.0.1")
    s.add_argument("dir", type=Path)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--log", type=Path, help="append one JSON line per request")

    p = sub.add_parser("gha-cache", help="a local GitHub Actions cache service (v2) for BuildKit's type=gha")
    gsub = p.add_subparsers(dest="gha_command", required=True)
    s = gsub.add_parser("serve", help="serve a cache stored in --root DIR; prints the runner's ACTIONS_* variables pointing at it")
    s.add_argument("--root", type=Path, required=True, help="where entries are stored (created if missing)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="default 0: a free port chosen by the OS")

    p = sub.add_parser("tinymodels", help="generate tiny real models and a manifest, laid out as a mirror")
    p.add_argument("out", type=Path)

    p = sub.add_parser("dockerfile", help="regenerate Dockerfile.models and the model block of Dockerfile")
    _manifest_arg(p)
    p.add_argument("--root", type=Path, default=Path("."), help="where Dockerfile and Dockerfile.models live")
    p.add_argument("--check", action="store_true", help="exit 1 when either file is out of date; write nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code_of(lambda: _dispatch(args))


def _dispatch(args: argparse.Namespace) -> int:
    handlers = {
        "lock": cmd_lock,
        "preload": cmd_preload,
        "verify": cmd_verify,
        "clean-cache": cmd_clean_cache,
        "mirror": cmd_mirror,
        "gha-cache": cmd_gha_cache,
        "tinymodels": cmd_tinymodels,
        "dockerfile": cmd_dockerfile,
    }
    return handlers[args.command](args)


def _load(args: argparse.Namespace):
    from .lockfile import read_lock
    from .manifest import load_manifest

    manifest = load_manifest(args.manifest)
    return manifest, read_lock(manifest.lock_path)


def cmd_lock(args: argparse.Namespace) -> int:
    from .constants import default_state_dir
    from .lockfile import check_drift, dumps, write_lock
    from .mirrors import parse_mirror_args, resolve_mirrors
    from .preload import lock_models, read_hf_token

    manifest, existing = _load(args)
    if args.check:
        if existing is None:
            print(f"error: {manifest.lock_path}: missing; run `modelbake lock`", file=sys.stderr)
            return 1
        drift = check_drift(manifest, existing)
        for line in drift:
            print(f"error: {manifest.lock_path}: {line}", file=sys.stderr)
        return 1 if drift else 0
    mirrors = resolve_mirrors(parse_mirror_args(args.mirror), manifest.mirrors)
    lock = lock_models(manifest, mirrors, read_hf_token(args.hf_token_file), default_state_dir())
    changed = existing is None or dumps(existing) != dumps(lock)
    write_lock(lock, manifest.lock_path)
    total = sum(e.total_bytes for e in lock.models.values())
    print(
        f"{'wrote' if changed else 'unchanged'} {manifest.lock_path}: {len(lock.models)} models, {total / 1e6:.1f} MB"
    )
    return 0


def _progress():
    from .progress import LineProgress, RichProgress

    if sys.stderr.isatty():
        rich = RichProgress()
        return rich, rich
    return LineProgress(), nullcontext()


def cmd_preload(args: argparse.Namespace) -> int:
    from .layout import Layout
    from .lockfile import read_entry
    from .mirrors import parse_mirror_args, resolve_mirrors
    from .preload import plan_from_entries, plan_from_manifest, preload, read_hf_token

    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: must be at least 1")
    started = time.perf_counter()
    if args.entry:
        text = sys.stdin.read() if args.entry == "-" else None
        plan = plan_from_entries([read_entry(args.entry if args.entry != "-" else "<stdin>", text)])
        manifest_mirrors: dict[str, str] = {}
    else:
        manifest, lock = _load(args)
        plan = plan_from_manifest(manifest, lock, manifest.select(args.profile, args.model))
        manifest_mirrors = manifest.mirrors
    mirrors = resolve_mirrors(parse_mirror_args(args.mirror), manifest_mirrors)
    layout = Layout.dest(args.dest) if args.dest else Layout.default()
    progress, context = _progress()
    with context:
        results = preload(
            plan, layout, mirrors, jobs=args.jobs, progress=progress, hf_token=read_hf_token(args.hf_token_file)
        )
    fetched = [r for r in results if r.status == "fetched"]
    moved = sum(r.bytes_fetched for r in results)
    took = time.perf_counter() - started
    where = args.dest or "the default caches"
    print(
        f"preload: {len(results)} models in {where}: {len(fetched)} fetched ({moved / 1e6:.1f} MB), "
        f"{len(results) - len(fetched)} already present, {took:.1f}s"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .layout import Layout
    from .preload import plan_from_manifest
    from .verify import verify_models

    manifest, lock = _load(args)
    plan = plan_from_manifest(manifest, lock, manifest.select(args.profile, args.model))
    layout = Layout.dest(args.models) if args.models else Layout.default()
    results = verify_models(plan.items, layout)
    _print_verify_table(results)
    failed = [r for r in results if not r.ok]
    if failed:
        for r in failed:
            print(f"error: model {r.model_id}: {r.detail}", file=sys.stderr)
        print(f"error: verify failed for {', '.join(r.model_id for r in failed)}", file=sys.stderr)
        return 1
    print(f"verify: {len(results)} models load and run offline")
    return 0


def _print_verify_table(results) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="modelbake verify (network blocked)")
    for column in ("model", "family", "bytes", "load s", "run s", "ok", "detail"):
        table.add_column(column, justify="right" if column in ("bytes", "load s", "run s") else "left")
    for r in results:
        table.add_row(
            r.model_id,
            r.family,
            f"{r.bytes:,}",
            f"{r.load_s:.2f}",
            f"{r.run_s:.2f}",
            "ok" if r.ok else "FAIL",
            r.detail,
        )
    Console(width=max(100, Console().width)).print(table)


def cmd_clean_cache(args: argparse.Namespace) -> int:
    from .clean import clean_models
    from .layout import Layout

    manifest, _ = _load(args)
    layout = Layout.dest(args.dest) if args.dest else Layout.default()
    removed = clean_models(manifest.select(args.profile), layout)
    for path in removed:
        print(f"removed {path}")
    print(f"clean-cache: {len(removed)} paths removed")
    return 0


def cmd_mirror(args: argparse.Namespace) -> int:
    from .mirror.server import serve_forever

    if not args.dir.is_dir():
        raise UsageError(f"{args.dir}: not a directory")
    serve_forever(args.dir, args.host, args.port, log_path=args.log)
    return 0


def cmd_gha_cache(args: argparse.Namespace) -> int:
    from .ghacache.server import serve_forever

    if args.root.exists() and not args.root.is_dir():
        raise UsageError(f"{args.root}: not a directory")
    serve_forever(args.root, args.host, args.port)
    return 0


def cmd_tinymodels(args: argparse.Namespace) -> int:
    from .tinymodels import build_mirror_tree

    tiny = build_mirror_tree(args.out)
    print(f"tinymodels: wrote {args.out} (manifest {tiny.manifest})")
    return 0


def cmd_dockerfile(args: argparse.Namespace) -> int:
    from .dockerfile import main as dockerfile_main

    argv = ["--manifest", str(args.manifest), "--root", str(args.root)]
    return dockerfile_main([*argv, "--check"] if args.check else argv)


if __name__ == "__main__":
    sys.exit(main())
