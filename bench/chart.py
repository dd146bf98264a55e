"""bench/results.png: wall time and bytes fetched per scenario, naive vs modelbake (matplotlib, the `bench` extra).

Why a chart: the app-change rebuild differs by two orders of magnitude, which a log-scale bar shows at a glance.
"""

from __future__ import annotations

from pathlib import Path

from bench.results import Outcome, _median_result


def rows(o: Outcome) -> list[tuple[str, float | None, float, float | None, float]]:
    """(scenario, naive seconds, modelbake seconds, naive MB, modelbake MB); None where naive has no counterpart."""
    naive_cold = next((r for r in o.naive if r.scenario == "cold build"), None)
    rebuild = _median_result(o.rebuilds)
    out: list[tuple[str, float | None, float, float | None, float]] = [
        (
            "cold build",
            naive_cold and naive_cold.wall,
            o.cold.wall,
            naive_cold and naive_cold.fetched / 1e6,
            o.cold.fetched / 1e6,
        ),
        ("app-code change", o.naive_rebuild.wall, rebuild.wall, o.naive_rebuild.fetched / 1e6, rebuild.fetched / 1e6),
        ("one pin change", None, o.pin.wall, None, o.pin.fetched / 1e6),
    ]
    for r in o.restores:
        suffix = "" if r.compression == "default" else f", {r.compression}"
        out.append(
            (
                f"restore: {r.backend}{suffix}\n(tar -x {o.tar_x:.1f} s)",
                None,
                r.restore.wall,
                None,
                r.restore.fetched / 1e6,
            )
        )
    return out


MISSING = (
    "bench: warning: matplotlib is not installed (pip install 'modelbake[bench]'): the run goes on, without the chart"
)


def chart_available() -> bool:
    """Whether matplotlib (the `bench` extra) imports. Asked before the run, so its absence is said at once
    and costs only the chart, not twenty minutes of measurements."""
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
    labels = [d[0] for d in data]
    y = list(range(len(data)))
    fig, (ax_t, ax_b) = plt.subplots(1, 2, figsize=(12, 0.8 * len(data) + 1.8), sharey=True)
    for ax, i_naive, i_mb, unit in ((ax_t, 1, 2, "wall time (s, log)"), (ax_b, 3, 4, "MB fetched from the mirror")):
        naive = [d[i_naive] or 0.0 for d in data]
        mb = [d[i_mb] for d in data]
        ax.barh([v + 0.2 for v in y], naive, height=0.4, color="#c0504d", label="naive Dockerfile")
        ax.barh([v - 0.2 for v in y], mb, height=0.4, color="#4f81bd", label="modelbake")
        for v, (a, b) in enumerate(zip(naive, mb, strict=True)):
            fmt = "{:.1f}" if i_naive == 1 else "{:,.0f}"
            if a:
                ax.text(a, v + 0.2, " " + fmt.format(a), va="center", fontsize=8)
            ax.text(b, v - 0.2, " " + fmt.format(b), va="center", fontsize=8)
        ax.set_xlabel(unit)
        if i_naive == 1:
            ax.set_xscale("log")
        ax.grid(axis="x", alpha=0.3)
    ax_t.set_yticks(y, labels, fontsize=9)
    ax_t.invert_yaxis()
    ax_t.legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"{o.models.total_bytes / 1e9:.2f} GB of real-size models, mirror at {o.bandwidth / 1e6:.0f} MB/s: "
        f"app-change speedup {o.speedup:.0f}x",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
