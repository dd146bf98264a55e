"""`podcast-pipeline process AUDIO ...` and `sample OUT.wav`: errors become one `error: ...` line and an exit code.

Exit codes: 0 ok; 2 bad input or usage (missing/unreadable/silent audio, unwritable --out, unknown
profile); 3 models missing or not matching the manifest/lock; 1 anything else.
Cheap checks run first (--out writable, audio decodable and not silent, models present), then inference.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from . import __version__, settings
from .errors import PipelineError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the whole usage otherwise)
        raise SystemExit(_fail(f"{self.prog}: {message} (see --help)", 2))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="podcast-pipeline", description="Podcast episode -> transcript, speakers, summary (offline).")
    parser.add_argument("--version", action="version", version=f"podcast-pipeline {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = commands.add_parser("process", help="process one episode, print or write JSON")
    p.add_argument("audio", metavar="AUDIO", help="WAV file (other formats need ffmpeg on PATH)")
    p.add_argument("--title", default="", help="episode title (searched for people too)")
    p.add_argument("--description", default="", help="episode description (searched for people too)")
    p.add_argument("--profile", help=f"manifest profile (default: ${settings.PROFILE_ENV}, else all models)")
    p.add_argument("--out", help="write the JSON here (atomically) instead of stdout")
    p.add_argument(
        "--models",
        help=f"baked models directory (default: ${settings.MODELS_DIR_ENV} or {settings.DEFAULT_MODELS_DIR})",
    )
    p.add_argument(
        "--manifest",
        help=f"models.toml, with models.lock beside it (default: ${settings.MANIFEST_ENV} or {settings.DEFAULT_MANIFEST})",
    )
    p.add_argument("--language", help="spoken language for multilingual Whisper models (default: detect)")
    p.add_argument("--quality", action="store_true", help="Whisper temperature fallback: better on hard audio, slower")
    p.add_argument("--overlap", type=int, default=0, help="tokens shared between consecutive summary chunks")
    p.add_argument("--max-new-tokens", type=int, help="cap per summary generate call (default: model's own)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    s = commands.add_parser("sample", help="write a short spoken sample episode (WAV, needs espeak-ng)")
    s.add_argument("out", metavar="OUT", help="the .wav file to write")
    s.add_argument("--text", help="what to say (default: a short interview of Alice Smith and Bob Jones)")
    s.add_argument("--voice", default="en-us", help="espeak-ng voice (default: en-us)")
    return parser


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help/--version (0) or a usage error already printed (2)
        return int(exc.code or 0)
    try:
        return _sample(args) if args.command == "sample" else _process(args)
    except PipelineError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - the boundary: one line, details with PODCAST_PIPELINE_DEBUG=1
        if os.environ.get("PODCAST_PIPELINE_DEBUG"):
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return _fail(f"{type(exc).__name__}: {first} (set PODCAST_PIPELINE_DEBUG=1 for a traceback)", 1)


def _sample(args: argparse.Namespace) -> int:
    from . import sample

    out = sample.synthesize(args.out, text=args.text or sample.TEXT, voice=args.voice)
    print(f"wrote {out} ({sample.duration(out):.1f} s of speech)", file=sys.stderr)
    if args.text is None:
        print(f'its title: "{sample.TITLE}"; description: "{sample.DESCRIPTION}"', file=sys.stderr)
    return 0


def _process(args: argparse.Namespace) -> int:
    from .audio import load_audio
    from .errors import InputError
    from .models import resolve
    from .output import check_writable, to_json, write_atomic
    from .pipeline import Options, Timings, process

    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    if args.overlap < 0:
        raise InputError(f"--overlap must be >= 0, got {args.overlap}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    out = Path(args.out) if args.out else None
    if out is not None:
        check_writable(out)
    timings = Timings()
    with timings.stage("audio"):
        audio = load_audio(args.audio)
    models = resolve(
        settings.manifest_path(args.manifest), settings.profile(args.profile), settings.models_dir(args.models)
    )
    options = Options(
        title=args.title,
        description=args.description,
        quality=args.quality,
        language=args.language,
        overlap=args.overlap,
        max_new_tokens=args.max_new_tokens,
    )
    result = process(Path(args.audio), models, options, audio=audio, timings=timings, log=log)
    text = to_json(result)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(out, text)
        log(f"wrote {out}")
    return 0
