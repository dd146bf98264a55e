"""``python -m testkit.ghacache serve --root DIR [--host H] [--port P]``: serve a GitHub Actions cache until
Ctrl-C, printing the ACTIONS_* variables a runner would set, pointing at it. Test tooling: not part of the
`modelbake` package or of any image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from testkit.ghacache.faults import BUSY, REFUSED, RESET, THROTTLED, Faults
from testkit.ghacache.server import serve_forever

FAULTS = {
    REFUSED: "403 AuthenticationFailed on a blob download",
    BUSY: "503 ServerBusy on a blob download",
    RESET: "a connection reset on a blob download",
    THROTTLED: "HTTP 429 resource_exhausted on a twirp call",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.ghacache", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve a cache stored in --root DIR; prints the runner's ACTIONS_* variables pointing at it",
        description="Serve a GitHub Actions cache stored in --root DIR until Ctrl-C; prints the ACTIONS_* "
        "variables a runner would set, pointing at it.",
        epilog="examples:\n  python -m testkit.ghacache serve --root /tmp/gha-cache --port 8766\n"
        "  python -m testkit.ghacache serve --root /tmp/gha-cache --fault refused --fault-prefix buildkit-blob-\n"
        "  python -m testkit.ghacache serve --root /tmp/gha-cache --fault throttled --retry-after 2 --url-ttl 30",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--root", type=Path, required=True, help="where entries are stored (created if missing)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="default 0: a free port chosen by the OS")
    faults = serve.add_argument_group("faults", "transient failures, answered as GitHub and Azure answer them")
    faults.add_argument(
        "--fault",
        choices=sorted(FAULTS),
        help="; ".join(f"{name}: {what}" for name, what in FAULTS.items()) + " (each key's first tries only)",
    )
    faults.add_argument(
        "--fault-times", type=int, default=1, metavar="N", help="tries of each key that fail (default 1)"
    )
    faults.add_argument("--fault-prefix", default="", metavar="KEY", help="only keys starting with this")
    faults.add_argument("--retry-after", type=int, metavar="SECONDS", help="sent with busy and throttled answers")
    faults.add_argument("--url-ttl", type=float, metavar="SECONDS", help="signed URLs expire this long after issue")
    args = parser.parse_args(argv)
    if args.root.exists() and not args.root.is_dir():
        parser.error(f"--root {args.root}: not a directory")
    if args.fault_times < 1:
        parser.error("--fault-times must be at least 1")
    serve_forever(args.root, args.host, args.port, lambda f: configure(f, args))
    return 0


def configure(faults: Faults, args: argparse.Namespace) -> None:
    """The faults the command line asks for."""
    faults.url_ttl = args.url_ttl
    prefix, times = args.fault_prefix, args.fault_times
    if args.fault == REFUSED:
        faults.refuse_downloads(prefix, times)
    elif args.fault == BUSY:
        faults.busy_downloads(prefix, times, args.retry_after)
    elif args.fault == RESET:
        faults.reset_downloads(prefix, times)
    elif args.fault == THROTTLED:
        faults.throttle(prefix, times, args.retry_after)


if __name__ == "__main__":
    sys.exit(main())
