"""The `modelbake` command line: argparse in front, the commands' work in the modules behind it.

`main(argv) -> int` parses and runs one command inside `errors.exit_code_of`, the one place where errors
become an `error:` line and an exit code; argparse's own errors go the same way (`ArgumentParser.error`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .constants import MANIFEST_ENV
from .errors import ArgumentParser, StaleError, UsageError, VerifyError, exit_code_of

if TYPE_CHECKING:  # imported where used, so `modelbake --help` stays fast
    from .lineprogress import Progress
    from .lockfile import Lock
    from .manifest import Manifest
    from .verify import VerifyResult

DEFAULT_MANIFEST = "models.toml"

DESCRIPTION = """\
Bake ML models (Whisper checkpoints, spaCy pipelines, Hugging Face models) into image layers of their own,
so an app's image runs with the network off and CI never downloads a model twice.

models.toml lists the models; `modelbake lock` pins every file's size and sha256 in models.lock; `preload`
fetches and checks them into your caches or an image tree; `verify` loads each one with the network blocked.
Each command has its own --help with examples."""

EPILOG = """\
examples:
  modelbake lock                                   # pin the models of models.toml into models.lock
  modelbake preload --profile test                 # into ~/.cache/whisper, ~/.cache/huggingface, the venv
  modelbake verify --profile test                  # load and run every model, network blocked
  modelbake preload --profile prod --dest ./models # the tree an image's model layers are made of

A failure prints one `error:` line (and a `hint:`) and exits 2 for bad input, 1 when the work failed."""

# Per command: (one line for the command list, what it does for you, examples). The examples are the epilog.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "lock": (
        "pin every model of the manifest (revisions, sizes, sha256s) into the lock",
        "Resolve each model of the manifest to an exact revision and record every file's size and sha256 in "
        "models.lock, beside the manifest. Commit it: every later fetch is checked against it, and a regenerated "
        "lock is byte-identical when nothing changed.",
        "  modelbake lock\n"
        "  modelbake lock --profile test                 # only the test profile's models; the others stay as they are\n"
        "  modelbake lock --manifest ml/models.toml --mirror huggingface=http://127.0.0.1:8765/huggingface\n"
        "  modelbake lock --check                       # in CI: exit 1 when models.lock is missing or stale",
    ),
    "preload": (
        "download and verify models into the usual caches or --dest DIR",
        "Download the models of a profile, check every file against the lock's sha256 before it appears, and put "
        "them where the libraries look (or into an image tree with --dest). What is already there is skipped "
        "without a single request; a failed download leaves the destination as it was.",
        "  modelbake preload --profile test\n"
        "  modelbake preload --profile prod --dest ./models --jobs 8\n"
        "  modelbake preload --model whisper-base --mirror whisper=http://127.0.0.1:8765/whisper",
    ),
    "verify": (
        "load every model offline with the real loaders and run a smoke inference",
        "Load every model of a profile with the real loaders (Whisper, spaCy, Transformers) while the network is "
        "blocked, and run one small inference each: proof that the caches or the image work offline. Needs the "
        "`ml` extra.",
        "  modelbake verify --profile test\n  modelbake verify --profile prod --models ./models",
    ),
    "clean-cache": (
        "remove the manifest's models from the caches (or from a --dest tree)",
        "Remove the manifest's models (of a profile, or all) from the libraries' caches, or from a --dest tree; "
        "other models are left alone.",
        "  modelbake clean-cache --profile test\n  modelbake clean-cache --dest ./models",
    ),
    "env": (
        "print the variables that point the libraries at a --dest tree, offline, as the image does",
        "Print shell `export` lines that point huggingface_hub, Transformers, Whisper and spaCy at a tree written by "
        "`modelbake preload --dest DIR`, offline: the variables the app image sets for /models. Run your app with "
        "them to try it against the same models before building an image.",
        '  eval "$(modelbake env --models ./models --profile prod)" && python -m myapp',
    ),
    "mirror": (
        "serve a directory of models over the hubs' protocols",
        "Serve Whisper checkpoints, spaCy wheels and a Hugging Face hub cache from a local directory, speaking the "
        "hubs' own URLs and API, for air-gapped builds and tests.",
        "  modelbake mirror serve ./models --port 8765",
    ),
    "dockerfile": (
        "regenerate Dockerfile.models",
        "Regenerate Dockerfile.models (one fetch step and one layer per model) from the manifest and its lock. The "
        "app Dockerfile is not generated: it starts FROM the models image.",
        "  modelbake dockerfile\n  modelbake dockerfile --check                 # in CI: exit 1 when it is stale",
    ),
}


def _manifest_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--manifest",
        type=Path,
        default=Path(os.environ.get(MANIFEST_ENV, DEFAULT_MANIFEST)),
        help="manifest file (default: models.toml, or $MODELBAKE_MANIFEST)",
    )


def _port(value: str) -> int:
    port = int(value) if value.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port (0-65535)")
    return port


def _command(sub: argparse._SubParsersAction[ArgumentParser], name: str, **kwargs: Any) -> argparse.ArgumentParser:
    summary, description, examples = COMMANDS[name]
    return sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=100),  # the raw formatter keeps the examples' layout
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="modelbake", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"modelbake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "lock")
    _manifest_arg(p)
    p.add_argument(
        "--profile", help="pin only this profile's models; the others keep their entries (default: every model)"
    )
    p.add_argument("--mirror", action="append", metavar="FAMILY=URL", help="base URL per family (repeatable)")
    p.add_argument("--hf-token-file", type=Path, help="file holding a Hugging Face token")
    p.add_argument("--check", action="store_true", help="exit 1 if the lock is missing or out of date; no network")

    p = _command(sub, "preload")
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
        help="fetch the single lock entry in FILE ('-' for stdin) without a manifest",
    )

    p = _command(sub, "verify")
    _manifest_arg(p)
    p.add_argument("--profile", help="profile of the manifest (default: every model)")
    p.add_argument("--model", action="append", metavar="ID", help="only this model id (repeatable)")
    p.add_argument("--models", type=Path, help="a --dest tree (default: the libraries' caches)")

    p = _command(sub, "clean-cache")
    _manifest_arg(p)
    p.add_argument("--profile", help="profile of the manifest (default: every model)")
    p.add_argument("--dest", type=Path, help="a --dest tree to empty instead of the caches")

    p = _command(sub, "env")
    _manifest_arg(p)
    p.add_argument("--profile", help="profile of the manifest (default: every model)")
    p.add_argument("--models", type=Path, required=True, help="a tree written by `preload --dest`")

    p = _command(sub, "mirror")
    msub = p.add_subparsers(dest="mirror_command", required=True, metavar="COMMAND")
    s = msub.add_parser(
        "serve",
        help="serve DIR on 127.0.0.1 until Ctrl-C",
        description="Serve DIR (whisper/, spacy/, huggingface/) until Ctrl-C; prints the base URL of each family.",
        epilog=f"examples:\n{COMMANDS['mirror'][2]}\n"
        "  modelbake preload --mirror whisper=http://127.0.0.1:8765/whisper   # then, in another shell",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("dir", type=Path, help="directory with whisper/, spacy/ and huggingface/ (a hub cache)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_port, default=8765, help="default 8765; 0: a free port chosen by the OS")
    s.add_argument("--log", type=Path, help="append one JSON line per request")

    p = _command(sub, "dockerfile")
    _manifest_arg(p)
    p.add_argument("--root", type=Path, default=Path("."), help="where Dockerfile.models lives")
    p.add_argument("--check", action="store_true", help="exit 1 when it is out of date; write nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    return exit_code_of(lambda: _dispatch(build_parser().parse_args(argv)))


def _dispatch(args: argparse.Namespace) -> int:
    handlers = {
        "lock": cmd_lock,
        "preload": cmd_preload,
        "verify": cmd_verify,
        "clean-cache": cmd_clean_cache,
        "env": cmd_env,
        "mirror": cmd_mirror,
        "dockerfile": cmd_dockerfile,
    }
    return handlers[args.command](args)


def _load(args: argparse.Namespace) -> tuple[Manifest, Lock | None]:
    from .lockfile import read_lock
    from .manifest import load_manifest

    manifest = load_manifest(args.manifest)
    return manifest, read_lock(manifest.lock_path)


def cmd_lock(args: argparse.Namespace) -> int:
    from .lockfile import Lock, check_drift, dumps, write_lock
    from .mirrors import parse_mirror_args, resolve_mirrors
    from .paths import default_state_dir
    from .preload import lock_models, read_hf_token

    manifest, existing = _load(args)
    specs = manifest.select(args.profile)
    if args.check:
        if existing is None:
            raise StaleError(f"{manifest.lock_path}: missing", hint="run `modelbake lock` and commit models.lock")
        drift = check_drift(manifest, existing, [s.id for s in specs])
        if drift:
            raise StaleError(f"{manifest.lock_path}: {'; '.join(drift)}", hint="run `modelbake lock`")
        return 0
    mirrors = resolve_mirrors(parse_mirror_args(args.mirror), manifest.mirrors)
    lock = lock_models(manifest, mirrors, read_hf_token(args.hf_token_file), default_state_dir(), specs)
    if args.profile:  # the other models keep the entries they have (none: they are not pinned yet)
        kept = {i: e for i, e in (existing.models if existing else {}).items() if i in manifest.models}
        lock = Lock(models={**kept, **lock.models})
    changed = existing is None or dumps(existing) != dumps(lock)
    write_lock(lock, manifest.lock_path)
    total = sum(e.total_bytes for e in lock.models.values())
    print(
        f"{'wrote' if changed else 'unchanged'} {manifest.lock_path}: {len(lock.models)} models, {total / 1e6:.1f} MB"
    )
    return 0


def _progress() -> tuple[Progress, AbstractContextManager[object]]:
    from .progress import LineProgress, RichProgress

    if sys.stderr.isatty():
        rich = RichProgress()
        return rich, rich
    return LineProgress(), nullcontext()


def cmd_preload(args: argparse.Namespace) -> int:
    from .lockfile import unpinned_warning
    from .mirrors import parse_mirror_args, resolve_mirrors
    from .paths import Layout
    from .preload import plan_for, preload, read_hf_token, summary_line

    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: must be at least 1")
    started = time.perf_counter()
    plan, manifest_mirrors = plan_for(args.entry, args.manifest, args.profile, args.model)
    if plan.missing_lock is not None:
        print(f"warning: {unpinned_warning(plan.missing_lock)}", file=sys.stderr, flush=True)
    mirrors = resolve_mirrors(parse_mirror_args(args.mirror), manifest_mirrors)
    layout = Layout.dest(args.dest) if args.dest else Layout.default()
    progress, context = _progress()
    with context:
        results = preload(
            plan, layout, mirrors, jobs=args.jobs, progress=progress, hf_token=read_hf_token(args.hf_token_file)
        )
    print(summary_line(results, str(args.dest or "the default caches"), time.perf_counter() - started))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .paths import Layout
    from .preload import plan_from_manifest
    from .verify import require_loaders, verify_models

    manifest, lock = _load(args)
    plan = plan_from_manifest(manifest, lock, manifest.select(args.profile, args.model))
    if args.models is not None and not args.models.is_dir():
        raise UsageError(f"--models {args.models}: not a directory", hint="pass a tree written by `preload --dest`")
    require_loaders({spec.family for spec, _ in plan.items})
    layout = Layout.dest(args.models) if args.models else Layout.default()
    results = verify_models(plan.items, layout)
    _print_verify_table(results)
    failed = [r for r in results if not r.ok]
    if failed:
        for r in failed:
            print(f"  model {r.model_id}: {r.detail}", file=sys.stderr)
        raise _verify_error(args, failed)
    print(f"verify: {len(results)} models load and run offline")
    return 0


def _verify_error(args: argparse.Namespace, failed: list[VerifyResult]) -> VerifyError:
    """One line for every model that failed; models that are not there get the hint that fetches them."""
    broken = ", ".join(r.model_id for r in failed if r.present)
    absent = ", ".join(r.model_id for r in failed if not r.present)
    if not absent:
        return VerifyError(f"verify failed for {broken}")
    where = f"not present in {args.models or 'the default caches'}: {absent}"
    preload = ["modelbake", "preload"]
    if args.manifest != Path(DEFAULT_MANIFEST):
        preload += ["--manifest", str(args.manifest)]
    preload += ["--profile", args.profile] if args.profile else []
    preload += [arg for model_id in args.model or [] for arg in ("--model", model_id)]
    if args.models:
        hint = f"run `{shlex.join([*preload, '--dest', str(args.models)])}` to fetch them into {args.models}"
    else:
        hint = (
            f"run `{shlex.join(preload)}` to fetch them, or pass --models DIR (a tree written by "
            "`modelbake preload --dest DIR`)"
        )
    return VerifyError(f"verify failed for {broken}; {where}" if broken else f"verify: {where}", hint)


def _print_verify_table(results: list[VerifyResult]) -> None:
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


def cmd_env(args: argparse.Namespace) -> int:
    from .paths import Layout, tree_env

    if not args.models.is_dir():
        raise UsageError(f"--models {args.models}: not a directory", hint="pass a tree written by `preload --dest`")
    manifest, _ = _load(args)
    variables = tree_env(Layout.dest(args.models.resolve()), manifest.select(args.profile))
    spacy_path = variables.pop("MODELBAKE_SPACY_PATH")
    for name, value in variables.items():
        print(f"export {name}={shlex.quote(value)}")
    if spacy_path:  # each pipeline's directory, ahead of what PYTHONPATH already holds
        print(f"export PYTHONPATH={shlex.quote(spacy_path)}${{PYTHONPATH:+:$PYTHONPATH}}")
    return 0


def cmd_clean_cache(args: argparse.Namespace) -> int:
    from .clean import clean_models
    from .paths import Layout

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


def cmd_dockerfile(args: argparse.Namespace) -> int:
    from .image.dockerfile import sync_dockerfile

    for path in sync_dockerfile(args.manifest, args.root, args.check):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
