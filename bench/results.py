"""`python -m bench`'s outcome: the goals, bench/results.md (tables, where the time goes) and the last line.

Why separate from the runs: the numbers come from one run, the text is derived from them only (never edited by
hand), and tests/test_bench.py checks the formatting without an engine.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.buildtrace import Timed
from bench.modelsets import ModelSet
from bench.scenarios import Restore, Result

SPEEDUP_GOAL = 20.0
ONE_MODEL_GOAL = 1.1
RESTORE_GOAL = 1.5
OVERHEAD_GOAL = 1.0  # percent


@dataclass
class Outcome:
    """Everything one run measured."""

    command: str
    quick: bool
    models: ModelSet
    bandwidth: float
    machine: str
    warm_up: dict[str, float]
    naive: list[Result]
    cold: Result
    rebuilds: list[Result]
    pin: Result
    restores: list[Restore]
    tar_runs: list[float]
    layers: list[dict] = field(default_factory=list)  # per model: id, files, layer, blob
    verify: Result | None = None
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)
    floors: dict[str, float] = field(default_factory=dict)  # the tar baseline's other timings (bench.tar_baseline)

    @property
    def naive_rebuild(self) -> Result:
        return next(r for r in self.naive if "app-code" in r.scenario)

    @property
    def rebuild_wall(self) -> float:
        return statistics.median(r.wall for r in self.rebuilds)

    @property
    def speedup(self) -> float:
        return self.naive_rebuild.wall / self.rebuild_wall if self.rebuild_wall else 0.0

    @property
    def rebuild_fetched(self) -> int:
        return sum(r.fetched for r in self.rebuilds)

    @property
    def changed_bytes(self) -> int:
        return self.models.model_bytes(self.models.changed)

    @property
    def tar_x(self) -> float:
        return statistics.median(self.tar_runs)

    def restore_ratio(self, r: Restore) -> float:
        return r.restore.wall / self.tar_x if self.tar_x else 0.0

    @property
    def worst_restore(self) -> Restore:
        shipped = [r for r in self.restores if r.compression == "default"] or self.restores
        return max(shipped, key=self.restore_ratio)

    @property
    def overhead(self) -> float:
        files = sum(m["files"] for m in self.layers)
        return 100 * (sum(m["layer"] for m in self.layers) - files) / files if files else 0.0

    def goals(self) -> list[tuple[str, str, bool]]:
        """(goal, measured, met)."""
        one = self.pin.fetched / self.changed_bytes if self.changed_bytes else 0.0
        worst = self.worst_restore
        return [
            (
                f"app-change speedup >= {SPEEDUP_GOAL:.0f}x with 0 model bytes fetched",
                f"{self.speedup:.1f}x, {_mb(self.rebuild_fetched)} fetched",
                self.speedup >= SPEEDUP_GOAL and self.rebuild_fetched == 0,
            ),
            (
                f"one-model change fetches <= {ONE_MODEL_GOAL}x that model's bytes",
                f"{_mb(self.pin.fetched)} for {_mb(self.changed_bytes)} = {one:.3f}x",
                0 < one <= ONE_MODEL_GOAL,
            ),
            (
                f"restore/tar <= {RESTORE_GOAL}x (every cache, build.py as shipped)",
                f"worst {worst.backend} {self.restore_ratio(worst):.1f}x",
                self.restore_ratio(worst) <= RESTORE_GOAL,
            ),
            (f"layer overhead <= {OVERHEAD_GOAL:.0f}%", f"{self.overhead:.2f}%", self.overhead <= OVERHEAD_GOAL),
        ]

    def last_line(self) -> str:
        return (
            f"app-change speedup {self.speedup:.1f}x; one-model change fetched {self.pin.fetched / 1e6:.1f} MB for a "
            f"{self.changed_bytes / 1e6:.1f} MB model of {self.models.total_bytes / 1e6:.1f} MB; "
            f"restore/tar {self.restore_ratio(self.worst_restore):.1f}x; layer overhead {self.overhead:.1f}%"
        )


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def main_table(o: Outcome) -> list[str]:
    """The scenario table the README quotes."""
    lines = [
        "| scenario | naive Dockerfile | modelbake | speedup |",
        "| --- | ---: | ---: | ---: |",
    ]
    naive_cold = next((r for r in o.naive if r.scenario == "cold build"), None)
    rows = [
        ("cold build", naive_cold, o.cold),
        ("rebuild after an app-code change", o.naive_rebuild, _median_result(o.rebuilds)),
        ("rebuild after one model's pin changes (Whisper tiny.en)", None, o.pin),
    ]
    for name, naive, mb in rows:
        ratio = f"{naive.wall / mb.wall:.1f}x" if naive and mb.wall else ""
        lines.append(f"| {name} | {_cell(naive)} | {_cell(mb)} | {ratio} |")
    for r in o.restores:
        label = f"restore from {r.backend} after a wipe" + ("" if r.compression == "default" else f" ({r.compression})")
        lines.append(f"| {label} | `tar -x` {o.tar_x:.1f} s | {_cell(r.restore)} | {o.restore_ratio(r):.1f}x tar |")
    if o.verify is not None:
        lines.append(
            f"| offline verify (`--network none`) | | {o.verify.wall:.1f} s, {'ok' if o.verify.ok else 'FAILED'} | |"
        )
    return lines


def _cell(r: Result | None) -> str:
    if r is None:
        return "-"
    failed = "" if r.ok else " FAILED"
    return f"{r.wall:.1f} s, {_mb(r.fetched)}{failed}"


def _median_result(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.wall)[len(results) // 2]


def render(o: Outcome) -> str:
    m = o.models
    lines = [
        "# Real-size benchmark: naive Dockerfile vs modelbake",
        "",
        f"Command: `{o.command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, total run time {o.elapsed / 60:.1f} min  ",
        f"Machine: {o.machine}  ",
        f"Models: {m.label}: {len(m.ids)} models, {_mb(m.total_bytes)} of files ({', '.join(m.ids)}); random weights "
        "at the real shapes and sizes, loadable. Served by `modelbake mirror` limited to "
        f"**{o.bandwidth / 1e6:.0f} MB/s** (shared by all connections); bytes fetched = the mirror's request log.",
        "",
        "Each cell: wall time of the whole build (build.py process, or `docker buildx build` for naive) and the bytes",
        "fetched from the mirror during it.",
        "",
        *main_table(o),
        "",
        "## Goals",
        "",
        "| goal | measured | |",
        "| --- | --- | --- |",
        *[f"| {g} | {v} | {'met' if ok else '**MISSED**'} |" for g, v, ok in o.goals()],
        "",
        f"Last line: `{o.last_line()}`",
        "",
    ]
    lines += _what_runs(o)
    lines += _layer_section(o)
    lines += _restore_section(o)
    lines += _restore_floor_section(o)
    lines += _cold_section(o)
    lines += _profile_section(o)
    lines += [f"- Note: {n}" for n in o.notes]
    return "\n".join(lines).rstrip() + "\n"


def _what_runs(o: Outcome) -> list[str]:
    pin = o.pin.detail
    return [
        "## What each scenario runs",
        "",
        "- **naive**: the project's `Dockerfile` up to its `deps` stage (the same base image and the same cached",
        "  venv layer as modelbake), then one stage: `COPY . .` and one `RUN python src/download_models.py`",
        "  (bench/naive_fetch.py: `urllib` for the Whisper checkpoints, `pip install --target` of the spaCy wheel URL,",
        "  huggingface_hub's `snapshot_download` for each Hugging Face repo), every model in ONE layer after the code.",
        "  Each naive image and its build records are removed after its build; a code edit reruns the download anyway.",
        "- **modelbake cold**: `python build.py --manifest M --profile bench --wheelhouse /opt/wheels --network host`",
        "  with a `--source-date-epoch` new to this run (an ARG of every model step: no older record can match).",
        f"- **app-code change**: one line appended to `src/podcast_pipeline/settings.py`, then the same command; "
        f"median of {len(o.rebuilds)} ({', '.join(f'{r.wall:.1f}' for r in o.rebuilds)} s).",
        "- **one pin change**: the manifest's Whisper tiny.en sha256 replaced by a second checkpoint of the same",
        f"  shape ({_mb(o.changed_bytes)}), `modelbake lock` (HEAD requests only), then build.py ({pin}).",
        "- **restore**: per cache, a cold `build.py --models-only --cache X` (exports with build.py's own specs), then",
        "  a wipe (the models image and every build record created since, never the deps layer) and",
        "  `build.py --models-only --cache X --cache-read-only`, compared with `tar -xf` of an uncompressed tarball of",
        "  the same model files into a fresh directory (page cache warm, no sync, the median of "
        f"{len(o.tar_runs)}: {', '.join(f'{t:.1f}' for t in o.tar_runs)} s).",
        "- Before the clock: the deps stage and the models image's fetch stage built once (untimed: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in o.warm_up.items())
        + "); both approaches reuse them.",
        "",
    ]


def _layer_section(o: Outcome) -> list[str]:
    lines = [
        "## Image and layer sizes vs. model file bytes",
        "",
        "| model | files | layer (app image) | overhead | blob (models image, as stored) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for m in o.layers:
        over = 100 * (m["layer"] - m["files"]) / m["files"] if m["files"] else 0.0
        lines.append(f"| {m['id']} | {m['files']:,} | {m['layer']:,} | {over:.2f}% | {m['blob']:,} |")
    files, layer = sum(m["files"] for m in o.layers), sum(m["layer"] for m in o.layers)
    blob = sum(m["blob"] for m in o.layers)
    lines.append(f"| **all** | {files:,} | {layer:,} | **{o.overhead:.2f}%** | {blob:,} |")
    lines.append("")
    sizes = [
        ("modelbake app image", o.cold.report.get("image", {}).get("size", 0)),
        ("modelbake models image", o.cold.report.get("models_image", {}).get("size", 0)),
    ]
    sizes += [(f"naive image ({r.scenario})", r.report.get("image", {}).get("size", 0)) for r in o.naive if r.report]
    lines.append("Image sizes (engine): " + "; ".join(f"{n} {_mb(s)}" for n, s in sizes) + ". The spaCy files are")
    lines.append("counted unpacked (what pip installs from the wheel); overhead is tar headers and 4 KiB rounding.")
    naive_layers = [r.report["image"]["layers"] for r in o.naive if r.report]
    if naive_layers:
        biggest = max(naive_layers[0], key=lambda x: x[2])
        lines.append(f"The naive image's largest layer: {_mb(biggest[2])} (`{_short(biggest[1], 60)}`): every model")
        lines.append("in one layer, after the code.")
    lines.append("")
    return lines


def _restore_section(o: Outcome) -> list[str]:
    lines = [
        "## Restore after a wipe, per cache",
        "",
        "| cache | compression | cold export build | restore | / tar -x | pulled | fetched from mirror | all cached, same layers |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in o.restores:
        ok = "yes" if r.all_cached and r.same_layers else f"NO (cached {r.all_cached}, same {r.same_layers})"
        lines.append(
            f"| {r.backend} | {r.compression} | {r.export.wall:.1f} s | **{r.restore.wall:.1f} s** | "
            f"{o.restore_ratio(r):.1f}x | {_mb(r.pulled)} | {_mb(r.restore.fetched)} | {ok} |"
        )
    lines.append("")
    return lines


def _restore_floor_section(o: Outcome) -> list[str]:
    """Why a restore cannot come near `tar -x` here: what any content-addressed restore must do at least."""
    if not o.floors or not o.tar_x:
        return []
    sha = o.floors.get("sha256", 0.0)
    best = min(o.restores, key=o.restore_ratio) if o.restores else None
    lines = [
        "## The restore's floor on this machine",
        "",
        f"- `tar -xf` of the same {_mb(o.models.total_bytes)}: {o.tar_x:.1f} s (page cache, no sync); "
        f"with `sync`: {o.floors.get('extract_sync', 0.0):.1f} s.",
        f"- One sha256 pass over the same bytes (`sha256sum`, one core): **{sha:.1f} s = {sha / o.tar_x:.1f}x "
        "`tar -x`** on its own. BuildKit and containerd cannot skip it: every blob pulled from a cache is checked "
        "against its digest, and unpacking checks each layer's diff id, a second pass (one pass when the blob is "
        "uncompressed and its digest is the diff id, which is why the models image's layers are uncompressed). "
        f"Even spread over both cores, one pass is {sha / 2 / o.tar_x:.1f}x `tar -x` before a byte is written.",
        "- Writes: the pulled blob goes into the content store, then its files into a snapshot: the bytes are "
        "written twice, `tar -x` once.",
    ]
    if best is not None:
        lines.append(
            f"- Best restore in this run: {best.backend} ({best.compression}) {best.restore.wall:.1f} s = "
            f"{o.restore_ratio(best):.1f}x `tar -x`, {best.restore.wall / sha:.1f}x one sha256 pass; its steps "
            "are in the next section (the pull of the blobs, then `unpacking to` the image store)."
        )
    lines += [
        "- So the goal of <= 1.5x `tar -x` is below what a verified, content-addressed restore can reach on 2 cores",
        "  with this engine; the levers taken: uncompressed model layers (no decompression, one hash pass),",
        "  largest models at the bottom of the stack (a change re-unpacks only what sits above it).",
        "",
    ]
    return lines


def _cold_section(o: Outcome) -> list[str]:
    """The cold build against the network limit: the model bytes at the mirror's bandwidth, and the rest."""
    limit = o.models.total_bytes / o.bandwidth
    cold = o.cold
    if not cold.ok or limit <= 0:
        return []
    steps = unique_steps(cold.steps)
    model_steps = [s for s in steps if s.parent is None and _MODEL_STEP.search(s.name)]
    fetching = _span(model_steps)
    rest = top_steps([s for s in steps if s not in model_steps], n=6, floor=0.5)
    return [
        "## The cold build against the network limit",
        "",
        f"- The network limit: {_mb(o.models.total_bytes)} of model files at {o.bandwidth / 1e6:.0f} MB/s = "
        f"**{limit:.1f} s**. modelbake's cold build took {cold.wall:.1f} s = **{cold.wall / limit:.2f}x** the limit.",
        f"- The model steps (one `RUN` per model, run in parallel, sharing the mirror's bandwidth) span "
        f"{fetching:.1f} s from the first start to the last end: download, sha256 of every file against the lock, "
        "the move into the layer root and the `SOURCE_DATE_EPOCH` stamp.",
        "- The rest, longest first: "
        + (
            "; ".join(f"{'↳ ' if s.parent else ''}{_short(s.name, 60)} {s.seconds:.1f} s" for s in rest)
            or "nothing over 0.5 s"
        )
        + ". Exporting writes every model layer into the content store and unpacks it into the image store (both"
        " images: the models image and the app's copies), so a cold build writes the model bytes several times.",
        "",
    ]


# A model step's vertex as a bake names it: `[models fetch-<id> 1/1] RUN ...`, `[models file-<sha>-<repo> 1/1] RUN
# ...` (a single-target build has no target in the brackets).
_MODEL_STEP = re.compile(r"^\[(?:[\w.-]+ )?(?:fetch|file)-[^\] ]+ \d+/\d+\] RUN ")
_TARGET = re.compile(r"^\[[\w.-]+(?:\] | (?=\S))")


def unique_steps(steps: list[Timed]) -> list[Timed]:
    """Each vertex once. In one bake the app's graph holds the models target's vertices too (`target:models`),
    and BuildKit reports a shared vertex under both targets though it runs once: `[models fetch-x 1/1] RUN`
    and `[app fetch-x 1/1] RUN`, same span. Counted once, under the first target that reports it."""
    seen: set[tuple[str, str | None, object, object]] = set()
    out = []
    for step in steps:
        key = (_TARGET.sub("[", step.name, count=1), step.parent, step.started, step.completed)
        if step.started is None or key not in seen:
            seen.add(key)
            out.append(step)
    return out


def _span(steps: list[Timed]) -> float:
    starts = [s.started for s in steps if s.started is not None]
    ends = [s.completed for s in steps if s.completed is not None]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


def top_steps(steps: list[Timed], n: int = 8, floor: float = 0.5) -> list[Timed]:
    """The longest steps and sub-steps not served from the cache."""
    return sorted((s for s in steps if s.seconds >= floor and not s.cached), key=lambda s: -s.seconds)[:n]


def _profile_section(o: Outcome) -> list[str]:
    """BuildKit's rawjson durations of the builds the goals rest on: where the time goes."""
    lines = ["## Where the time goes (BuildKit rawjson step durations, longest first)", ""]
    picks: list[tuple[str, Result]] = [
        ("naive rebuild after an app-code change", o.naive_rebuild),
        ("modelbake rebuild after an app-code change", _median_result(o.rebuilds)),
        ("modelbake one pin change", o.pin),
    ]
    picks += [(f"restore from {r.backend} ({r.compression})", r.restore) for r in o.restores]
    for label, result in picks:
        steps = top_steps(unique_steps(result.steps), floor=0.3 if result.wall > 10 else 0.05)
        text = "; ".join(f"{'↳ ' if s.parent else ''}{_short(s.name, 60)} {s.seconds:.1f} s" for s in steps)
        lines.append(f"- **{label}** ({result.wall:.1f} s): {text or 'no step over the floor'}")
    lines.append("")
    return lines


def _short(name: str, n: int) -> str:
    name = " ".join(name.split()).replace("|", "\\|").replace("`", "'")
    return name if len(name) <= n else name[: n - 3] + "..."


README_START = "<!-- bench:start (python -m bench rewrites this block) -->"
README_END = "<!-- bench:end -->"


def readme_block(o: Outcome) -> str:
    """What the README quotes: the command, the machine, the scenario table and the last line."""
    return "\n".join(
        [
            README_START,
            f"`{o.command}` ({time.strftime('%Y-%m-%d', time.gmtime())}; {o.machine.split(';')[0]}; "
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
