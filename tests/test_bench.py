"""`python -m bench`'s pure parts, without an engine: the ratios and goals, the results text and the README block,
the rawjson profile, the naive Dockerfile cut."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.buildtrace import BuildPyRun, Timed, profile  # noqa: E402
from bench.client import Pull  # noqa: E402
from bench.diskuse import Added  # noqa: E402
from bench.layouts import LayoutResult  # noqa: E402
from bench.modelsets import ModelFile, ModelSet  # noqa: E402
from bench.naive import naive_dockerfile  # noqa: E402
from bench.results import MODEL_STEP, Outcome, breakdown, span, unique_steps  # noqa: E402
from bench.results_render import README_END, README_START, main_table, render, update_readme  # noqa: E402
from bench.scenarios import Measure, stages_run  # noqa: E402
from bench.tar_baseline import TarBaseline  # noqa: E402

pytestmark = pytest.mark.unit
GB = 1_000_000_000
T0 = datetime(2026, 1, 1)


def _models() -> ModelSet:
    files = [ModelFile("whisper-tiny-en", "whisper/tiny.en.pt", 75_000_000), ModelFile("big", "big.bin", 2_925_000_000)]
    return ModelSet(
        "test set", Path("/x"), Path("/x/models.toml"), ["whisper-tiny-en", "big"], files, Path("/x/w.whl"),
        "whisper-tiny-en", "a" * 64, "b" * 64,
    )  # fmt: skip


def _pull(wall: float, model_bytes: int, unpacked: int = 0) -> Pull:
    return Pull("r/app:x", wall, 0, Added(1, unpacked or model_bytes, model_bytes))


def _layout(
    name: str, cold: float, rebuilds: list[float], restore: float, second: int, base_models: int
) -> LayoutResult:
    r = LayoutResult(name)
    r.cold = Measure("cold", cold, 3 * GB)
    r.rebuilds = [Measure("rebuild", w) for w in rebuilds]
    r.pin = Measure("pin", 9.0, 75_000_000)
    r.second_app = Measure("second", 40.0, model_unpacked=second)
    r.dep_bump = Measure("deps", 50.0)
    r.base_bump = Measure("base", 60.0)
    r.restore = Measure("restore", restore)
    r.first_pull = _pull(50.0, 3 * GB)
    r.pulls = {"base": _pull(30.0, base_models), "deps": _pull(20.0, base_models), "pin": _pull(12.0, 89_000_000)}
    return r


def _outcome(**new_overrides) -> Outcome:
    new = dict(cold=45.0, rebuilds=[2.0, 1.5, 3.0], restore=20.0, second=0, base_models=0) | new_overrides
    layouts = {
        "new": _layout("new", **new),
        "old": _layout("old", cold=90.0, rebuilds=[1.8, 1.6, 1.7], restore=40.0, second=3 * GB, base_models=3 * GB),
    }
    tar = TarBaseline(5 * GB, 1000, [9.0, 8.0, 10.0], 12.0, 0.0, 0.0, 0, 0, 20.0)
    return Outcome("python -m bench", False, _models(), 100e6, "2 cores", layouts, Measure("naive", 60.0, 3 * GB), tar)


def test_ratios_come_from_the_runs_numbers():
    o = _outcome()
    assert o.limit == 30.0  # 3 GB at 100 MB/s
    assert o.cold_ratio("new") == 1.5 and o.cold_ratio("old") == 3.0
    assert o.tar_x == 9.0 and o.restore_ratio("new") == pytest.approx(20 / 9)
    assert o.rebuild("new").wall == 2.0 and o.speedup("new") == 30.0  # the median of three
    assert o.pin_ratio("new") == 1.0


def test_every_goal_met_and_each_one_missed_on_its_own():
    assert [ok for _, _, ok in _outcome().goals()] == [True] * 6
    for change, goal in [
        (dict(cold=49.5), "cold build"),  # 1.65x the limit
        (dict(restore=23.0), "restore"),  # 2.56x tar
        (dict(second=1), "a second app"),  # one byte of a model unpacked again
        (dict(base_models=4096), "a base-image bump"),
        (dict(rebuilds=[2.6, 2.7, 2.8]), "app-code change"),  # slower than the old layout's 1.7 s + 0.5 s
    ]:
        missed = [g for g, _, ok in _outcome(**change).goals() if not ok]
        assert len(missed) == 1 and missed[0].startswith(goal), (change, missed)


def test_an_app_code_rebuild_that_fetched_a_byte_misses():
    o = _outcome()
    o.layouts["new"].rebuilds[1].fetched = 1
    assert not next(ok for g, _, ok in o.goals() if g.startswith("app-code change"))


def test_the_old_layout_wins_where_it_is_faster_by_more_than_ten_percent():
    o = _outcome()
    assert [name for name, _, _ in o.old_wins()] == ["app-code change (median)"]  # 1.7 s vs 2.0 s
    o.layouts["old"].pulls["pin"] = _pull(5.0, 89_000_000)
    assert ("client pull: pin", 5.0, 12.0) in o.old_wins()


def test_the_table_has_both_layouts_and_the_ratio():
    table = "\n".join(main_table(_outcome()))
    assert "| scenario | old layout | new layout | new / old |" in table
    assert "| cold build (network limit 30.0 s) | 90.0 s = 3.00x limit | 45.0 s = 1.50x limit | 0.50x |" in table
    assert "same models): model bytes added on disk | 40.0 s, **3,000.0 MB** | 40.0 s, **0.0 MB** |" in table
    assert (
        "client: pull after a base-image bump | 30.0 s, 0.0 MB down, 3,000.0 MB unpacked (**3,000.0 MB** models)"
        in table
    )


def test_render_and_the_readme_block(tmp_path):
    o = _outcome()
    text = render(o)
    assert text.endswith("\n") and "## Goals (new layout)" in text and o.last_line() in text
    assert "- app-code change (median): old 1.7 s, new 2.0 s" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold numbers\n{README_END}\nrest\n")
    assert update_readme(readme, o)
    new = readme.read_text()
    assert new.startswith("intro\n") and new.endswith("\nrest\n") and "old numbers" not in new
    assert "| cold build (network limit 30.0 s) |" in new
    readme.write_text("no markers\n")
    assert not update_readme(readme, o) and readme.read_text() == "no markers\n"


def test_a_bake_reports_shared_model_steps_once_and_the_cold_profile_finds_them():
    """In one bake the app's graph holds the models target's vertices: BuildKit reports each under both targets."""
    fetch = dict(started=T0, completed=T0 + timedelta(seconds=9))
    shard = dict(started=T0 + timedelta(seconds=1), completed=T0 + timedelta(seconds=12))
    steps = [
        Timed("[models fetch-whisper-tiny-en 1/1] RUN --mount=type=secret,id=lock x", 9, **fetch),
        Timed("[app fetch-whisper-tiny-en 1/1] RUN --mount=type=secret,id=lock x", 9, **fetch),
        Timed("[models file-35e25e8012f1dc1d-facebook--bart-large-cnn 1/1] RUN x", 11, **shard),
        Timed("[app file-35e25e8012f1dc1d-facebook--bart-large-cnn 1/1] RUN x", 11, **shard),
        Timed("[models] exporting to image", 3, started=T0, completed=T0 + timedelta(seconds=3)),
        Timed("[app] exporting to image", 4, started=T0 + timedelta(seconds=20), completed=T0 + timedelta(seconds=24)),
        Timed("[fetch-whisper-base-en 1/1] RUN x", 2, **fetch),  # a single-target build: no target in brackets
        Timed("[app app 13/14] LINK COPY --link src/ /app/src/", 0.2, **fetch),
    ]
    unique = unique_steps(steps)
    assert [s.name for s in unique] == [steps[i].name for i in (0, 2, 4, 5, 6, 7)]
    model_steps = [s for s in unique if MODEL_STEP.search(s.name)]
    assert [s.seconds for s in model_steps] == [9, 11, 2]
    assert span(model_steps) == 12.0


def _doc(**kw) -> str:
    return json.dumps(kw) + "\n"


def _t(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat() + "Z"


def test_the_profile_and_the_breakdown_of_a_bake_trace():
    """A rawjson trace as build.py's --rawjson writes it: where the cold build's time went, per target."""
    fetch, exp_m, exp_a, venv = "sha256:f", "sha256:m", "sha256:a", "sha256:v"
    text = "".join(
        [
            _doc(vertexes=[{"digest": fetch, "name": "[models fetch-big 1/1] RUN fetch", "started": _t(0)}]),
            _doc(vertexes=[{"digest": fetch, "name": "[app fetch-big 1/1] RUN fetch", "started": _t(0)}]),
            _doc(vertexes=[{"digest": fetch, "started": _t(0), "completed": _t(30)}]),  # no name: both copies
            _doc(
                vertexes=[
                    {"digest": exp_m, "name": "[models] exporting to image", "started": _t(30), "completed": _t(60)}
                ]
            ),
            _doc(statuses=[{"vertex": exp_m, "id": "exporting layers", "started": _t(30), "completed": _t(50)}]),
            _doc(
                statuses=[
                    {"vertex": exp_m, "id": "unpacking to docker.io/x/m:1", "started": _t(50), "completed": _t(58)}
                ]
            ),
            _doc(
                vertexes=[
                    {
                        "digest": venv,
                        "name": "[app app 2/6] LINK COPY --link --from=deps /opt/venv /opt/venv",
                        "started": _t(30),
                        "completed": _t(35),
                    }
                ]
            ),  # fmt: skip
            _doc(
                vertexes=[{"digest": exp_a, "name": "[app] exporting to image", "started": _t(60), "completed": _t(70)}]
            ),
            _doc(statuses=[{"vertex": exp_a, "id": "exporting layers", "started": _t(60), "completed": _t(64)}]),
            _doc(
                statuses=[
                    {"vertex": exp_a, "id": "unpacking to docker.io/x/a:1", "started": _t(64), "completed": _t(69)}
                ]
            ),
        ]
    )
    steps = profile(text)
    shared = [s for s in steps if s.name.endswith("RUN fetch")]
    assert [(s.target, s.seconds) for s in shared] == [("models", 30.0), ("app", 30.0)]
    parts = breakdown(steps)
    assert parts == {
        "model steps (span)": 30.0,
        "models: exporting layers": 20.0,
        "models: unpacking": 8.0,
        "models: rest of the export": 2.0,
        "app: exporting layers": 4.0,
        "app: unpacking": 5.0,
        "app: rest of the export": 1.0,
        "app: its own steps (span)": 5.0,
    }
    run = BuildPyRun("x", 75.0, True, {"durations": {"total": 70.2}}, steps)
    assert [s.name for s in run.target_steps("models")] == [
        "[models fetch-big 1/1] RUN fetch",
        "[models] exporting to image",
        "exporting layers",
        "unpacking to docker.io/x/m:1",
    ]
    assert run.outside_bake == pytest.approx(4.8)
    assert profile(text, target="app")[0].name == "[app fetch-big 1/1] RUN fetch"


def test_naive_dockerfile_keeps_deps_and_adds_one_stage():
    text = naive_dockerfile((REPO / "Dockerfile").read_text())
    assert "FROM base AS deps" in text and "AS models" not in text
    naive = text.split("FROM deps AS naive", 1)[1]
    assert naive.index("COPY . .") < naive.index("download_models.py")
    with pytest.raises(RuntimeError):
        naive_dockerfile("FROM x\n")


def test_without_matplotlib_the_run_goes_on_and_skips_the_chart(tmp_path, monkeypatch, capsys):
    """No `bench` extra: one warning line before any work starts, then results.md without the chart.

    `run` (an hour of Docker builds) is replaced by a canned Outcome: the subject here is what `main` does
    around it, and when it says so.
    """
    import bench.__main__ as bench_main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    said_before_run: list[str] = []

    def run(args, command):
        said_before_run.append(capsys.readouterr().err)
        return _outcome()

    monkeypatch.setattr(bench_main, "run", run)
    out, chart = tmp_path / "results.md", tmp_path / "results.png"
    assert bench_main.main(["--quick", "--out", str(out), "--chart", str(chart)]) == 0
    warning = said_before_run[0].strip().splitlines()
    assert len(warning) == 1 and "matplotlib is not installed" in warning[0] and "modelbake[bench]" in warning[0]

    def undated(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("Date:")]

    assert undated(out.read_text()) == undated(render(_outcome())) and not chart.exists()
    assert "matplotlib" not in capsys.readouterr().err  # said once


def test_warmed_stages_that_ran_again_are_found_in_the_report():
    """Another user's test pruned our records: the build's report says which warmed stages ran."""
    stages = [
        {"build": "models", "stage": "fetch", "status": "built", "seconds": 20.0},
        {"build": "models", "stage": "fetch-whisper-tiny-en", "status": "built", "seconds": 3.0},
        {"build": "models", "stage": "models", "status": "cached", "seconds": 0},
        {"build": "app", "stage": "deps", "status": "cached", "seconds": 0},
        {"build": "app", "stage": "base", "status": "built", "seconds": 1.5},
        {"build": "app", "stage": "app", "status": "built", "seconds": 9.0},
    ]
    m = Measure("x", 30.0, report={"stages": stages})
    assert stages_run(m, models_too=False) == {"models/fetch": 20.0, "app/base": 1.5}  # a cold build's model steps
    assert stages_run(m, models_too=True) == {
        "models/fetch": 20.0,
        "models/fetch-whisper-tiny-en": 3.0,  # a rebuild runs no model step
        "app/base": 1.5,
    }
    assert stages_run(Measure("y", 1.0, report={"stages": stages[2:4]}), models_too=True) == {}


def test_a_single_build_without_a_tag_only_fills_the_cache():
    """testkit's runner (the bench's warm-ups): no tag, no image in the store, its layers unpacked for nothing."""
    from modelbake.image.bake import BuildSpec
    from testkit.buildx import build_argv

    warm = build_argv(BuildSpec(context=Path("."), dockerfile=Path("Dockerfile"), target="deps"))
    assert warm[warm.index("--output") + 1] == "type=cacheonly"
    tagged = build_argv(BuildSpec(context=Path("."), dockerfile=Path("Dockerfile"), target="deps", tags=["a:b"]))
    assert "--output" not in tagged and "--tag" in tagged
