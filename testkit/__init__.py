"""Test support for modelbake: not part of the product.

Lives beside `src/`, not in it: the `modelbake` package (what `pip install` ships) and the app image (which
copies `src/`) carry none of it. Importable by the tests (pytest's `pythonpath`) and by the bench and
`make demo` (both run from the repository root).

- `testkit.tinymodels`: tiny real models (random weights, the libraries' real layouts) as a mirror tree
- `testkit.ghacache`: a GitHub Actions cache service (v2) for BuildKit's `type=gha`, with counters and faults
- `testkit.demo`: `make demo`, the main job end to end over the local mirror
"""
