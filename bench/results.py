"""`python -m bench`'s outcome and its arithmetic: the ratios, the goals, where the cold build's time goes.

Why apart from the runs and the text: every number in bench/results.md is derived here from one run's
measurements (never edited by hand), and tests/test_bench.py checks the arithmetic without an engine. The text
itself: bench/results_render.py.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from bench.buildtrace import Timed
from bench.contexts import NEW, OLD
from bench.layouts import LayoutResult
from bench.modelsets import ModelSet
from bench.scenarios import Measure
from bench.tar_baseline import TarBaseline

COLD_GOAL = 1.6  # cold build / network limit, new layout
RESTORE_GOAL = 2.5  # gha restore after a wipe / tar -x of the same bytes, new layout
PIN_FETCH_GOAL = 1.01  # bytes fetched for one model's pin change / that model's bytes
SPEEDUP_GOAL = 20.0  # naive app-code rebuild / modelbake's
NO_WORSE = 1.25  # new layout's app-code rebuild / old layout's (both medians of one run)


@dataclass
class Outcome:
    """Everything one run measured."""

    command: str
    quick: bool
    models: ModelSet
    bandwidth: float
    machine: str
    layouts: dict[str, LayoutResult]
    naive: Measure | None = None  # the naive Dockerfile's rebuild after an app-code change
    tar: TarBaseline | None = None  # tar -x of the app image's files
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)
    others: str = ""  # what else ran on the engine meanwhile
    finished: str = ""  # when the run ended (UTC), for the text

    @property
    def limit(self) -> float:
        """The network limit: the model files at the mirror's bandwidth."""
        return self.models.total_bytes / self.bandwidth

    @property
    def tar_x(self) -> float:
        return statistics.median(self.tar.extract) if self.tar and self.tar.extract else 0.0

    @property
    def changed_bytes(self) -> int:
        return self.models.model_bytes(self.models.changed)

    def cold_ratio(self, layout: str) -> float:
        cold = self.layouts[layout].cold
        return cold.wall / self.limit if cold and self.limit else 0.0

    def restore_ratio(self, layout: str) -> float:
        restore = self.layouts[layout].restore
        return restore.wall / self.tar_x if restore and self.tar_x else 0.0

    def rebuild(self, layout: str) -> Measure:
        """The median app-code rebuild."""
        runs = sorted(self.layouts[layout].rebuilds, key=lambda m: m.wall)
        return runs[len(runs) // 2]

    def speedup(self, layout: str) -> float:
        wall = self.rebuild(layout).wall
        return self.naive.wall / wall if self.naive and wall else 0.0

    def pin_ratio(self, layout: str) -> float:
        pin = self.layouts[layout].pin
        return pin.fetched / self.changed_bytes if pin and self.changed_bytes else 0.0

    def max_outside_bake(self) -> tuple[float, str]:
        """The longest time any build.py run spent outside its bake (SDK and engine calls), and which run."""
        found = [(m.outside_bake, m.label) for r in self.layouts.values() for m in r.builds]
        return max(found, default=(0.0, ""))

    def goals(self) -> list[tuple[str, str, bool]]:
        """(goal, measured, met), for the new layout, from this run's numbers."""
        new, old = self.layouts.get(NEW), self.layouts.get(OLD)
        out: list[tuple[str, str, bool]] = []
        if new is None:
            return out
        cold = self.cold_ratio(NEW)
        out.append((f"cold build <= {COLD_GOAL}x the network limit", f"{cold:.2f}x", 0 < cold <= COLD_GOAL))
        if new.restore is not None and self.tar_x:
            ratio = self.restore_ratio(NEW)
            out.append((f"restore from gha <= {RESTORE_GOAL}x `tar -x`", f"{ratio:.2f}x", ratio <= RESTORE_GOAL))
        if new.second_app is not None:
            added = new.second_app.model_unpacked
            out.append(("a second app adds 0 model bytes on disk", _mb(added), added == 0 and new.second_app.ok))
        base = new.pulls.get("base")
        if base is not None:
            out.append(
                (
                    "a base-image bump unpacks 0 model bytes on a pulling client",
                    _mb(base.added.model_bytes),
                    base.ok and base.added.model_bytes == 0,
                )
            )
        mine = self.rebuild(NEW)
        fetched = sum(m.fetched for m in new.rebuilds)
        ok = fetched == 0 and (self.naive is None or self.speedup(NEW) >= SPEEDUP_GOAL)
        text = f"{mine.wall:.1f} s, {_mb(fetched)} fetched"
        if self.naive is not None:
            text += f", {self.speedup(NEW):.1f}x naive"
        if old is not None and old.rebuilds:
            theirs = self.rebuild(OLD).wall
            ok = ok and mine.wall <= max(NO_WORSE * theirs, theirs + 0.5)
            text += f", old layout {theirs:.1f} s"
        out.append((f"app-code change: 0 bytes, >= {SPEEDUP_GOAL:.0f}x naive, no slower than the old layout", text, ok))
        pin = self.pin_ratio(NEW)
        out.append(
            (
                "one pin change fetches 1.0x that model's bytes",
                f"{_mb(new.pin.fetched if new.pin else 0)} for {_mb(self.changed_bytes)} = {pin:.3f}x",
                0 < pin <= PIN_FETCH_GOAL,
            )
        )
        return out

    def old_wins(self, margin: float = 0.1) -> list[tuple[str, float, float]]:
        """(scenario, old, new) where the old layout was faster by more than `margin` (seconds, pulls and builds)."""
        new, old = self.layouts.get(NEW), self.layouts.get(OLD)
        if new is None or old is None:
            return []
        pairs = [("cold build", old.cold, new.cold), ("app-code change (median)", self.rebuild(OLD), self.rebuild(NEW))]
        pairs += [("pin change (builder)", old.pin, new.pin), ("second app (builder)", old.second_app, new.second_app)]
        pairs += [("dependency bump (builder)", old.dep_bump, new.dep_bump)]
        pairs += [("base-image bump (builder)", old.base_bump, new.base_bump)]
        pairs += [("restore from gha", old.restore, new.restore)]
        found = [(name, a.wall, b.wall) for name, a, b in pairs if a and b and a.wall * (1 + margin) < b.wall]
        for update in ("base", "deps", "pin"):
            a, b = old.pulls.get(update), new.pulls.get(update)
            if a and b and a.wall * (1 + margin) < b.wall:
                found.append((f"client pull: {update}", a.wall, b.wall))
        return found

    def last_line(self) -> str:
        parts = [f"cold/limit new {self.cold_ratio(NEW):.2f}x"]
        if OLD in self.layouts:
            parts[-1] += f" (old {self.cold_ratio(OLD):.2f}x)"
        if self.tar_x and self.layouts[NEW].restore:
            parts.append(f"restore/tar new {self.restore_ratio(NEW):.2f}x")
        new = self.layouts[NEW]
        if new.second_app:
            parts.append(f"second app adds {_mb(new.second_app.model_unpacked)} of models")
        if "base" in new.pulls:
            parts.append(f"base bump unpacks {_mb(new.pulls['base'].added.model_bytes)} of models")
        parts.append(f"app change {self.rebuild(NEW).wall:.1f} s")
        return "; ".join(parts)


# A model step's vertex as a bake names it: `[models fetch-<id> 1/1] RUN ...`, `[models file-<sha>-<repo> 1/1] RUN
# ...` (a single-target build has no target in the brackets).
MODEL_STEP = re.compile(r"^\[(?:[\w.-]+ )?(?:fetch|file)-[^\] ]+ \d+/\d+\] RUN ")
_TARGET = re.compile(r"^\[[\w.-]+(?:\] | (?=\S))")


def unique_steps(steps: list[Timed]) -> list[Timed]:
    """Each vertex once, and each of its sub-steps once. In one bake the app's graph holds the models target's
    vertices too (`target:models`), and BuildKit reports a shared vertex under both targets though it runs once:
    `[models fetch-x 1/1] RUN` and `[app fetch-x 1/1] RUN`, same span, same sub-steps. Counted once, under the
    first target that reports it."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for step in steps:
        parent = _TARGET.sub("[", step.parent, count=1) if step.parent else None
        key = (_TARGET.sub("[", step.name, count=1), parent, step.started, step.completed)
        if step.parent is not None:
            key += (step.seconds, step.bytes)
        if step.started is None and step.parent is None or key not in seen:
            seen.add(key)
            out.append(step)
    return out


def _models_stage(stage: str | None) -> bool:
    """A stage of Dockerfile.models (in the app's graph too, through `target:models`), or no stage at all."""
    return stage is None or stage in ("fetch", "models") or stage.startswith(("fetch-", "file-"))


def span(steps: list[Timed]) -> float:
    """From the first start to the last end (steps that ran in parallel count once)."""
    starts = [s.started for s in steps if s.started is not None]
    ends = [s.completed for s in steps if s.completed is not None]
    return max(0.0, (max(ends) - min(starts)).total_seconds()) if starts and ends else 0.0


def breakdown(steps: list[Timed]) -> dict[str, float]:
    """Where a build's time went, from its rawjson steps: the model steps' span, and each target's export split
    into writing the layers (`exporting layers`), unpacking them into the image store (`unpacking to ...`), and
    the rest of the export (manifests, naming); plus the app's own steps that ran."""
    steps = unique_steps(steps)
    model = [s for s in steps if s.parent is None and MODEL_STEP.search(s.name) and not s.cached]
    out = {"model steps (span)": span(model)}
    for target in ("models", "app"):
        vertex = next((s for s in steps if s.parent is None and s.name == f"[{target}] exporting to image"), None)
        if vertex is None:
            continue
        subs = [s for s in steps if s.parent == vertex.name]
        layers = sum(s.seconds for s in subs if s.name.startswith("exporting layers"))
        unpack = sum(s.seconds for s in subs if s.name.startswith("unpacking to"))
        out[f"{target}: exporting layers"] = layers
        out[f"{target}: unpacking"] = unpack
        out[f"{target}: rest of the export"] = max(0.0, vertex.seconds - layers - unpack)
    own = [
        s
        for s in steps
        if s.parent is None and s.target == "app" and not s.cached and s.seconds > 0 and not _models_stage(s.stage)
    ]
    out["app: its own steps (span)"] = span([s for s in own if "exporting" not in s.name])
    return out


def top_steps(steps: list[Timed], n: int = 8, floor: float = 0.5) -> list[Timed]:
    """The longest steps and sub-steps not served from the cache."""
    return sorted((s for s in steps if s.seconds >= floor and not s.cached), key=lambda s: -s.seconds)[:n]


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"
