"""``python -m modelbake.ghacache serve --root DIR``: the same as ``modelbake gha-cache serve``."""

import sys

from modelbake.cli import main

raise SystemExit(main(["gha-cache", *sys.argv[1:]]))
