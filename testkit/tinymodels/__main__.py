"""``python -m testkit.tinymodels OUT``: tiny real models and a manifest, laid out for `modelbake mirror serve`."""

from .mirrorset import main

raise SystemExit(main())
