"""`python -m bench.rerender WORKDIR`: bench/results.md, its chart and the README block written again from the
outcome a `python -m bench --workdir WORKDIR` run kept (`outcome.pickle`), without building anything.

Why: the text is derived from the measurements only; a fix to how they are written must not cost an hour of
builds on the shared engine.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from bench.chart import chart_available, write_chart
    from bench.filelayers_report import carried_block, with_block
    from bench.results_render import render, update_readme

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.rerender WORKDIR", file=sys.stderr)
        return 2
    outcome = pickle.loads((Path(args[0]) / "outcome.pickle").read_bytes())
    name = "results-quick" if outcome.quick else "results"
    out = REPO / "bench" / f"{name}.md"
    previous = out.read_text() if out.is_file() else ""
    block = carried_block(previous)
    text = render(outcome)
    out.write_text(with_block(text, block) if block else text)
    if chart_available():
        write_chart(outcome, REPO / "bench" / f"{name}.png")
    if not outcome.quick:
        update_readme(REPO / "README.md", outcome)
    print(outcome.last_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
