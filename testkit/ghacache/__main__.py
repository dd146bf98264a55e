"""``python -m testkit.ghacache serve --root DIR [--host H] [--port P]``: serve a GitHub Actions cache until
Ctrl-C, printing the ACTIONS_* variables a runner would set, pointing at it. Test tooling: not part of the
`modelbake` package or of any image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from testkit.ghacache.server import serve_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.ghacache", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve a cache stored in --root DIR; prints the runner's ACTIONS_* variables pointing at it",
        description="Serve a GitHub Actions cache stored in --root DIR until Ctrl-C; prints the ACTIONS_* "
        "variables a runner would set, pointing at it.",
        epilog="examples:\n  python -m testkit.ghacache serve --root /tmp/gha-cache --port 8766",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--root", type=Path, required=True, help="where entries are stored (created if missing)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="default 0: a free port chosen by the OS")
    args = parser.parse_args(argv)
    if args.root.exists() and not args.root.is_dir():
        parser.error(f"--root {args.root}: not a directory")
    serve_forever(args.root, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
