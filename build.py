#!/usr/bin/env python3
"""Build the models image (one layer per model) and the app image on it: `python build.py --help`.

Thin on purpose: the logic lives in modelbake.imagebuild (tested there). The repository's src/ is put first on
sys.path, so this works from a fresh clone and from a copy of the repository alike.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

from modelbake.imagebuild import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], root=ROOT))
