"""The Docker fetch step's entry point: `python -m modelbake.fetch_entry --entry - --dest /models`.

Why not `modelbake preload`: a model step's cache key holds every file the fetch stage copies. The CLI (every
command's help, rich progress bars, verify, the mirror) changes far more often than fetching does, and with it
in the stage a help-string edit re-ran every model step and invalidated every model layer in every cache. This
module imports only the fetch path (listed in `FETCH_SOURCES` of dockerfile.py; a test proves the list is
closed) and reports one plain line per model, which is what a build log wants anyway.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from .errors import ArgumentParser, UsageError, exit_code_of
from .filelayers import link_big_files, one_file, place_blob, without_big_files
from .lineprogress import LineProgress
from .lockfile import FileRef, LockedFile, LockedModel
from .mirrors import parse_mirror_args, resolve_mirrors
from .paths import Layout
from .preload import plan_for, plan_from_entries, preload, read_hf_token, summary_line


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m modelbake.fetch_entry", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--entry", metavar="FILE", help="the single lock entry in FILE ('-' for stdin)")
    what.add_argument("--manifest", type=Path, help="a manifest (an unlocked model: with --model)")
    what.add_argument("--file", metavar="FILE", help="one big file of a model, as JSON in FILE ('-' for stdin)")
    parser.add_argument("--lock", type=Path, help="with --file: the lock that says which revision to fetch it from")
    parser.add_argument(
        "--file-layers-over-bytes",
        type=int,
        metavar="BYTES",
        help="with --entry: leave out files larger than this (their own steps fetch them) but link them",
    )
    parser.add_argument("--model", action="append", metavar="ID", help="only this model id of --manifest")
    parser.add_argument("--dest", type=Path, required=True, help="the --dest tree to fetch into")
    parser.add_argument("--mirror", action="append", metavar="FAMILY=URL", help="base URL per family (repeatable)")
    parser.add_argument("--jobs", type=int, default=4, help="parallel downloads (default 4)")
    parser.add_argument("--hf-token-file", type=Path, help="file holding a Hugging Face token")
    return parser


def run(args: argparse.Namespace) -> int:
    """Fetch into `--dest` (what `modelbake preload --dest` does), one line per model on stderr."""
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: must be at least 1")
    started = time.perf_counter()
    layout = Layout.dest(args.dest)
    big: list[tuple[LockedModel, list[LockedFile]]] = []
    single: LockedModel | None = None
    if args.file:
        if args.lock is None:
            raise UsageError("--file needs --lock (where the file's revision comes from)")
        if args.file_layers_over_bytes is not None:
            raise UsageError("--file-layers-over-bytes goes with --entry (a model's step), not --file")
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        single = one_file(FileRef.from_json(text, args.file), args.lock)
        plan, manifest_mirrors = plan_from_entries([single]), dict[str, str]()
    else:
        plan, manifest_mirrors = plan_for(args.entry, args.manifest, None, args.model)
        # A step's manifest is its own one-model copy on stdin, not the user's file: errors name "the manifest's"
        # field, and a missing lock is build.py's to warn about.
        plan = replace(plan, manifest=None, missing_lock=None)
    if args.file_layers_over_bytes is not None:
        split = [
            without_big_files(entry, args.file_layers_over_bytes) if entry else (entry, []) for _, entry in plan.items
        ]
        big = [(entry, files) for entry, files in split if files and entry is not None]
        # A model of big files only has nothing left to fetch here: its layer is its links and refs.
        plan = plan_from_entries([entry for entry, _ in split if entry is not None and entry.files])
    mirrors = resolve_mirrors(parse_mirror_args(args.mirror), manifest_mirrors)
    results = preload(
        plan,
        layout,
        mirrors,
        jobs=args.jobs,
        progress=LineProgress(),
        hf_token=read_hf_token(args.hf_token_file),
    )
    for entry, files in big:
        link_big_files(layout, entry, files)
        print(
            f"linked {entry.id}: {len(files)} file(s) over {args.file_layers_over_bytes:,} bytes, each a layer of its own"
        )
    if single is not None:
        place_blob(layout, single)
    print(summary_line(results, str(args.dest), time.perf_counter() - started))
    return 0


def main(argv: list[str] | None = None) -> int:
    return exit_code_of(lambda: run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
