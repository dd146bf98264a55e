"""``python -m modelbake.tinymodels OUT``."""

from .mirrorset import main

raise SystemExit(main())
