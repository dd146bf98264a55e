"""bench/results.md and the README's bench block, written from one run's Outcome (bench/results.py) only."""

from __future__ import annotations

import time
from pathlib import Path

from bench.contexts import LOCK_BUMP, LOCK_DROPS, LOCK_SMALL, NEW, OLD
from bench.layouts import UPDATE_LABELS, UPDATES
from bench.results import Outcome, breakdown, top_steps, unique_steps
from bench.scenarios import Measure

README_START = "<!-- bench:start (python -m bench rewrites this block) -->"
README_END = "<!-- bench:end -->"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _s(m: Measure | None) -> str:
    if m is None:
        return "-"
    return f"{m.wall:.1f} s" + ("" if m.ok else " FAILED")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else ""


def main_table(o: Outcome) -> list[str]:
    """Old vs new, each scenario one row: the builder's, the restore's and the pulling client's."""
    new, old = o.layouts.get(NEW), o.layouts.get(OLD)
    cols = [r for r in (old, new) if r is not None]
    head = "| scenario | " + " | ".join(f"{r.layout} layout" for r in cols) + " | new / old |"
    lines = [head, "| --- |" + " ---: |" * (len(cols) + 1)]

    def row(name: str, cell, value) -> None:
        cells = [cell(r) for r in cols]
        ratio = _ratio(value(new), value(old)) if new and old else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")

    row(
        f"cold build (network limit {o.limit:.1f} s)",
        lambda r: f"{_s(r.cold)} = {o.cold_ratio(r.layout):.2f}x limit",
        lambda r: r.cold.wall if r and r.cold else 0,
    )
    naive = f" (naive Dockerfile: {_s(o.naive)}, {_mb(o.naive.fetched)})" if o.naive else ""
    row(
        "app-code change, median" + naive,
        lambda r: f"{_s(o.rebuild(r.layout))}, {_mb(sum(m.fetched for m in r.rebuilds))} fetched",
        lambda r: o.rebuild(r.layout).wall if r and r.rebuilds else 0,
    )
    row(
        f"one pin change ({o.models.changed}, {_mb(o.changed_bytes)})",
        lambda r: f"{_s(r.pin)}, {_mb(r.pin.fetched if r.pin else 0)} fetched = {o.pin_ratio(r.layout):.2f}x",
        lambda r: r.pin.wall if r and r.pin else 0,
    )
    row(
        "second app (smaller lock, same models): model bytes added on disk",
        lambda r: f"{_s(r.second_app)}, **{_mb(r.second_app.model_unpacked if r.second_app else 0)}**",
        lambda r: r.second_app.model_unpacked if r and r.second_app else 0,
    )
    row(
        "dependency bump on the models image (builder)",
        lambda r: _s(r.dep_bump),
        lambda r: r.dep_bump.wall if r and r.dep_bump else 0,
    )
    row(
        "base-image bump on the models image (builder)",
        lambda r: _s(r.base_bump),
        lambda r: r.base_bump.wall if r and r.base_bump else 0,
    )
    if o.tar_x:
        row(
            f"restore from gha after a wipe (`tar -x` {o.tar_x:.1f} s)",
            lambda r: f"{_s(r.restore)} = {o.restore_ratio(r.layout):.2f}x tar",
            lambda r: r.restore.wall if r and r.restore else 0,
        )
    row(
        "client: first pull",
        lambda r: _pull(r.first_pull),
        lambda r: r.first_pull.wall if r and r.first_pull else 0,
    )
    for update in UPDATES:
        row(
            f"client: pull after {UPDATE_LABELS[update]}",
            lambda r, u=update: _pull(r.pulls.get(u)),
            lambda r, u=update: r.pulls[u].wall if r and u in r.pulls else 0,
        )
    return lines


def _pull(p) -> str:
    if p is None:
        return "-"
    failed = "" if p.ok else " FAILED"
    return (
        f"{p.wall:.1f} s, {_mb(p.downloaded)} down, {_mb(p.added.bytes)} unpacked "
        f"(**{_mb(p.added.model_bytes)}** models){failed}"
    )


def render(o: Outcome) -> str:
    m = o.models
    lines = [
        "# Real-size benchmark: the new layer order (models at the bottom) vs the old one",
        "",
        f"Command: `{o.command}`  ",
        f"Date: {o.finished or time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, total run time "
        f"{o.elapsed / 60:.1f} min  ",
        f"Machine: {o.machine}  ",
        f"Also on the engine meanwhile: {o.others or 'nothing seen'}  ",
        f"Models: {m.label}: {len(m.ids)} models, {_mb(m.total_bytes)} of files ({', '.join(m.ids)}); served by "
        f"`modelbake mirror` limited to **{o.bandwidth / 1e6:.0f} MB/s** (shared by all connections).",
        "",
        "Both layouts are built by build.py as shipped, in one run, one after the other (new first), each from an",
        "engine without anything of the run. Cells: wall time of the whole `python build.py` process (or of the",
        "`docker pull`), bytes fetched from the mirror, downloaded from the registry, and unpacked on disk under",
        "containerd's snapshotter (files of new snapshots; **models**: the files under `fs/models/`).",
        "",
        *main_table(o),
        "",
        "## Goals (new layout)",
        "",
        "| goal | measured | |",
        "| --- | --- | --- |",
        *[f"| {g} | {v} | {'met' if ok else '**MISSED**'} |" for g, v, ok in o.goals()],
        "",
        f"Last line: `{o.last_line()}`",
        "",
    ]
    lines += _verdict(o)
    lines += _cold_section(o)
    lines += _restore_section(o)
    lines += _client_section(o)
    lines += _sdk_section(o)
    lines += _method(o)
    lines += [f"- Note: {n}" for n in o.notes]
    return "\n".join(lines).rstrip() + "\n"


def _verdict(o: Outcome) -> list[str]:
    wins = o.old_wins()
    out = ["## Does the old layout win anywhere?", ""]
    if not wins:
        return out + ["No scenario of this run was more than 10% faster with the old layout.", ""]
    out.append("Faster with the old layout by more than 10% in this run:")
    out += [f"- {name}: old {a:.1f} s, new {b:.1f} s ({b / a:.2f}x)" for name, a, b in wins]
    return out + [""]


def _cold_section(o: Outcome) -> list[str]:
    out = ["## Where the cold build's time goes (BuildKit's rawjson steps)", ""]
    rows = {r.layout: breakdown(r.cold.steps) for r in o.layouts.values() if r.cold}
    keys = list(dict.fromkeys(k for b in rows.values() for k in b))
    out += ["| part | " + " | ".join(rows) + " |", "| --- |" + " ---: |" * len(rows)]
    out += [f"| {k} | " + " | ".join(f"{b.get(k, 0.0):.1f} s" for b in rows.values()) + " |" for k in keys]
    out.append(
        "| wall (build.py) | " + " | ".join(f"{o.layouts[k].cold.wall:.1f} s" for k in rows if o.layouts[k].cold) + " |"
    )
    out += [""]
    for r in o.layouts.values():
        if r.cold:
            out.append(
                f"- {r.layout}: the cold build wrote {_mb(r.cold.unpacked)} into new snapshots, "
                f"{_mb(r.cold.model_unpacked)} of it model files ({r.cold.model_unpacked / o.models.total_bytes:.1f}"
                " copies of the models on disk)."
            )
    return out + [""]


def _restore_section(o: Outcome) -> list[str]:
    out = ["## Restore from the gha cache after a wipe", ""]
    if o.tar:
        out.append(
            f"`tar -x` of the app image's files ({_mb(o.tar.bytes)}, {o.tar.files:,} files, from `docker export`):"
            f" {', '.join(f'{t:.1f}' for t in o.tar.extract)} s (median {o.tar_x:.1f} s, page cache warm, no sync);"
            f" with sync {o.tar.extract_sync:.1f} s; one sha256 pass over the tarball {o.tar.sha256:.1f} s."
        )
        out.append("")
    for r in o.layouts.values():
        x = r.restore
        if x is None:
            continue
        steps = top_steps(unique_steps(x.steps), n=6, floor=0.5)
        text = "; ".join(f"{'↳ ' if s.parent else ''}{_short(s.name, 50)} {s.seconds:.1f} s" for s in steps)
        out.append(
            f"- **{r.layout}** {x.wall:.1f} s: {_mb(x.downloaded)} from the cache, {_mb(x.fetched)} from the mirror, "
            f"{_mb(x.unpacked)} unpacked ({_mb(x.model_unpacked)} models); {x.detail}. Longest: {text or '-'}."
        )
    return out + [""]


def _client_section(o: Outcome) -> list[str]:
    out = ["## The pulling client", ""]
    out.append(
        "A client with none of the run's images pulls the first version, then each new version in turn (forgetting"
        " each before the next). Downloads are the registry's count of blob bytes it sent; unpacked is on disk."
    )
    out.append("")
    for r in o.layouts.values():
        pushed = ", ".join(f"{p.ref.rsplit(':', 1)[1]} {_mb(p.uploaded)} in {p.wall:.1f} s" for p in r.pushes)
        out.append(f"- {r.layout}: pushes {pushed or '-'}")
    return out + [""]


def _sdk_section(o: Outcome) -> list[str]:
    worst, label = o.max_outside_bake()
    probes = ", ".join(f"{r.layout} {r.sdk_seconds:.2f} s" for r in o.layouts.values() if r.cold)
    return [
        "## build.py's Docker SDK calls at real size",
        "",
        f"- The report's calls (`images.get` and `history()` of the app and the models image, through build.py's own"
        f" client), made again right after each cold build: {probes or '-'}.",
        f"- The longest time any build.py run of this benchmark spent outside its bake (start-up, engine checks,"
        f" cache probes, the report's inspection): **{worst:.1f} s** ({label}). No run hit the read timeout (600 s;"
        " ping 10 s).",
        "- Where the old 10 s was hit: `client.images.load()` of the models image's tarball, when build.py made"
        " reproducible layers with an OCI export and `docker load` (commit bc9ea04). ae35329 dropped the export and"
        " the load (reproducible layers come from the fetch steps); the old bench's `--engine-timeout 900` override"
        " outlived it. The same call now, on this run's models image:",
        *_load_probe(o),
        "",
    ]


def _load_probe(o: Outcome) -> list[str]:
    probe = next((r.sdk_load for r in o.layouts.values() if r.sdk_load), None)
    if probe is None:
        return ["  not measured."]
    return [
        f"  - read timeout {timeout} s: {what} after {seconds:.1f} s ({_mb(probe.bytes)} tarball)"
        for timeout, (what, seconds) in probe.outcomes.items()
    ]


def _method(o: Outcome) -> list[str]:
    new = o.layouts.get(NEW)
    warm = "; ".join(
        f"{r.layout}: " + ", ".join(f"{k} {v:.0f} s" for k, v in r.warm_up.items()) for r in o.layouts.values()
    )
    return [
        "## What each scenario runs",
        "",
        "- **new layout**: the project's Dockerfile (the app FROM the models image, then the base's root filesystem"
        " as one layer, the venv, the code). **old layout**: the same Dockerfile whose app stage starts FROM deps"
        " and copies each model layer out of the models image (`COPY --link --from=models --exclude=...`, generated"
        " by bench/oldlayout.py as modelbake did until f46e895); built by the same `python build.py --context DIR`.",
        "- Every build: `python build.py --manifest M --profile bench --base-image B --source-date-epoch E --network"
        " host --context DIR --wheelhouse /opt/wheels --json F --rawjson R`, B a base image of the run's own, E new"
        " per layout (every model step is new to it). Before each layout's clock (untimed): " + (warm or "-") + ".",
        f"- **app-code change**: one line appended to src/podcast_pipeline/settings.py, rebuilt "
        f"({len(new.rebuilds) if new else 0} times, median). **naive**: the project's Dockerfile up to deps, then"
        " `COPY . .` and every model downloaded in one RUN (bench/naive.py).",
        "- **pin change**: Whisper tiny.en re-pinned to another checkpoint of the same shape, `modelbake lock`, build.",
        f"- **second app**: an app with a smaller lock (requirements/app.txt without {', '.join(LOCK_DROPS[LOCK_SMALL])})"
        " on the same models, built on the engine that holds the first app (restored from the cache just before).",
        f"- **dependency bump**: requirements/app.txt without {', '.join(LOCK_DROPS[LOCK_BUMP])} (another venv layer"
        " of the same size). **base-image bump**: `--base-image` another image (the base plus one file). Both built"
        " with `--models-image` on the models image pushed once (no model step), as an app's CI does.",
        "- **restore**: the first version's build exporting to the GitHub Actions cache emulator (testkit.ghacache,"
        " v2, a hosted runner's variables; `--models-cache-mode min`: the model layers, all a restore reads), a wipe"
        " (the run's images and build records, and containerd's collector done), then `--cache gha"
        " --cache-read-only`.",
        "- **client**: Debian's docker-registry on a loopback address of its own; the engine emptied of the run,"
        " then `docker pull` of each version.",
        "",
    ]


def _short(name: str, n: int) -> str:
    name = " ".join(name.split()).replace("|", "\\|").replace("`", "'")
    return name if len(name) <= n else name[: n - 3] + "..."


def readme_block(o: Outcome) -> str:
    """What the README quotes: the command, the machine, the scenario table and the last line."""
    return "\n".join(
        [
            README_START,
            f"`{o.command}` ({(o.finished or time.strftime('%Y-%m-%d', time.gmtime()))[:10]}; {o.machine.split(';')[0]}; "
            f"{_mb(o.models.total_bytes)} of models, mirror at {o.bandwidth / 1e6:.0f} MB/s):",
            "",
            *main_table(o),
            "",
            f"`{o.last_line()}`",
            README_END,
        ]
    )


def update_readme(readme: Path, o: Outcome) -> bool:
    """Replace the README's bench block (between the markers) with this run's; False when it has no markers."""
    text = readme.read_text()
    head, start, rest = text.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not start or not end:
        return False
    readme.write_text(head + readme_block(o) + tail)
    return True
