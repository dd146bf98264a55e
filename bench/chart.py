"""bench/results.png: wall time per scenario, old layout vs new (matplotlib, the `bench` extra).

Why a chart: the scenarios differ by two orders of magnitude (an app-code change against a cold build), which
a log-scale bar shows at a glance.
"""

from __future__ import annotations

from pathlib import Path

from bench.contexts import NEW, OLD
from bench.layouts import UPDATES
from bench.results import Outcome


def rows(o: Outcome) -> list[tuple[str, float, float]]:
    """(scenario, old seconds, new seconds); 0.0 where a layout has no measurement."""
    old, new = o.layouts.get(OLD), o.layouts.get(NEW)

    def wall(r, pick) -> float:
        m = pick(r) if r is not None else None
        return m.wall if m is not None else 0.0

    out = [
        ("cold build", wall(old, lambda r: r.cold), wall(new, lambda r: r.cold)),
        (
            "app-code change",
            o.rebuild(OLD).wall if old and old.rebuilds else 0.0,
            o.rebuild(NEW).wall if new and new.rebuilds else 0.0,
        ),
        ("pin change", wall(old, lambda r: r.pin), wall(new, lambda r: r.pin)),
        ("second app", wall(old, lambda r: r.second_app), wall(new, lambda r: r.second_app)),
        ("dependency bump", wall(old, lambda r: r.dep_bump), wall(new, lambda r: r.dep_bump)),
        ("base-image bump", wall(old, lambda r: r.base_bump), wall(new, lambda r: r.base_bump)),
        ("restore from gha", wall(old, lambda r: r.restore), wall(new, lambda r: r.restore)),
    ]
    out += [
        (f"client: {u} pull", wall(old, lambda r, u=u: r.pulls.get(u)), wall(new, lambda r, u=u: r.pulls.get(u)))
        for u in UPDATES
    ]
    return out


MISSING = (
    "bench: warning: matplotlib is not installed (pip install 'modelbake[bench]'): the run goes on, without the chart"
)


def chart_available() -> bool:
    """Whether matplotlib (the `bench` extra) imports. Asked before the run, so its absence is said at once
    and costs only the chart, not the measurements."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_chart(o: Outcome, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = rows(o)
    y = list(range(len(data)))
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(data) + 1.6))
    old = [d[1] for d in data]
    new = [d[2] for d in data]
    ax.barh([v + 0.2 for v in y], old, height=0.4, color="#c0504d", label="old layout (models above deps)")
    ax.barh([v - 0.2 for v in y], new, height=0.4, color="#4f81bd", label="new layout (models at the bottom)")
    for v, (a, b) in enumerate(zip(old, new, strict=True)):
        if a:
            ax.text(a, v + 0.2, f" {a:.1f}", va="center", fontsize=8)
        if b:
            ax.text(b, v - 0.2, f" {b:.1f}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("wall time (s, log)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_yticks(y, [d[0] for d in data], fontsize=9)
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"{o.models.total_bytes / 1e9:.2f} GB of real-size models, mirror at {o.bandwidth / 1e6:.0f} MB/s", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
