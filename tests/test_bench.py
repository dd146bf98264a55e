"""`python -m bench`'s pure parts: the naive Dockerfile cut, the goals, the last line and the results table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.modelsets import ModelFile, ModelSet  # noqa: E402
from bench.naive import naive_dockerfile  # noqa: E402
from bench.results import Outcome, main_table, render  # noqa: E402
from bench.scenarios import Restore, Result  # noqa: E402

pytestmark = pytest.mark.unit


def _outcome(naive_wall: float = 120.0, pin_fetched: int = 75_600_000, restore_wall: float = 12.0) -> Outcome:
    files = [ModelFile("whisper-tiny-en", "whisper/tiny.en.pt", 75_572_145), ModelFile("big", "big.bin", 2_636_400_000)]
    models = ModelSet(
        "test set",
        Path("/x"),
        Path("/x/models.toml"),
        ["whisper-tiny-en", "big"],
        files,
        Path("/x/w.whl"),
        "whisper-tiny-en",
        "a" * 64,
        "b" * 64,
    )
    cold = Result("cold build", "modelbake", 150.0, 2_712_000_000, report={"image": {"size": 1}, "models_image": {}})
    rebuilds = [Result("rebuild after an app-code change", "modelbake", w, 0) for w in (3.0, 2.0, 4.0)]
    restore = Restore(
        "gha",
        "default",
        Result("export", "modelbake", 90.0, 2_712_000_000),
        Result("restore from gha after a wipe", "modelbake", restore_wall, 0),
        2_500_000_000,
        True,
        True,
    )
    return Outcome(
        command="python -m bench --quick",
        quick=True,
        models=models,
        bandwidth=100e6,
        machine="2 cores",
        warm_up={"deps stage": 1.0},
        naive=[Result("rebuild after an app-code change", "naive", naive_wall, 2_712_000_000)],
        cold=cold,
        rebuilds=rebuilds,
        pin=Result("rebuild after one model's pin changes", "modelbake", 9.0, pin_fetched, detail="x"),
        restores=[restore],
        tar_runs=[8.0, 10.0, 9.0],
        layers=[{"id": "big", "files": 1000, "layer": 1004, "blob": 900}],
    )


def test_last_line_has_the_issue_format():
    line = _outcome().last_line()
    assert line == (
        "app-change speedup 40.0x; one-model change fetched 75.6 MB for a 75.6 MB model of 2712.0 MB; "
        "restore/tar 1.3x; layer overhead 0.4%"
    )


def test_goals_met_and_missed():
    assert all(ok for _, _, ok in _outcome().goals())
    missed = {g.split()[0]: ok for g, _, ok in _outcome(naive_wall=30.0, pin_fetched=90_000_000).goals()}
    assert missed["app-change"] is False and missed["one-model"] is False


def test_speedup_needs_zero_model_bytes():
    o = _outcome()
    o.rebuilds[1].fetched = 1
    assert not o.goals()[0][2]


def test_tables_render():
    o = _outcome()
    table = "\n".join(main_table(o))
    assert "| rebuild after an app-code change | 120.0 s, 2,712.0 MB | 3.0 s, 0.0 MB | 40.0x |" in table
    assert "restore from gha after a wipe" in table
    assert render(o).endswith("\n")
    assert "restore's floor" not in render(o)  # no tar baseline timings: no floor section


def test_restore_floor_section_compares_with_one_hash_pass():
    o = _outcome(restore_wall=27.0)
    o.floors = {"sha256": 18.0, "extract_sync": 12.0}
    text = render(o)
    assert "One sha256 pass over the same bytes (`sha256sum`, one core): **18.0 s = 2.0x `tar -x`**" in text
    assert "Best restore in this run: gha (default) 27.0 s = 3.0x `tar -x`, 1.5x one sha256 pass" in text


def test_naive_dockerfile_keeps_deps_and_adds_one_stage():
    text = naive_dockerfile((REPO / "Dockerfile").read_text())
    assert "FROM base AS deps" in text and "AS models" not in text
    naive = text.split("FROM deps AS naive", 1)[1]
    assert naive.index("COPY . .") < naive.index("download_models.py")
    with pytest.raises(RuntimeError):
        naive_dockerfile("FROM x\n")


def test_without_matplotlib_the_run_goes_on_and_skips_the_chart(tmp_path, monkeypatch, capsys):
    """No `bench` extra: one warning line before any work starts, then results.md without the chart.

    `run` (twenty minutes of Docker builds) is replaced by a canned Outcome: the subject here is what
    `main` does around it, and when it says so.
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
    assert out.read_text() == render(_outcome()) and not chart.exists()
    assert "matplotlib" not in capsys.readouterr().err  # said once


def test_a_bake_reports_shared_model_steps_once_and_the_cold_profile_finds_them():
    """In one bake the app's graph holds the models target's vertices: BuildKit reports each under both targets."""
    from datetime import datetime, timedelta

    from bench.buildtrace import Timed
    from bench.results import _MODEL_STEP, _span, unique_steps

    t0 = datetime(2026, 1, 1)
    fetch = dict(started=t0, completed=t0 + timedelta(seconds=9))
    shard = dict(started=t0 + timedelta(seconds=1), completed=t0 + timedelta(seconds=12))
    steps = [
        Timed("[models fetch-whisper-tiny-en 1/1] RUN --mount=type=secret,id=lock x", 9, **fetch),
        Timed("[app fetch-whisper-tiny-en 1/1] RUN --mount=type=secret,id=lock x", 9, **fetch),
        Timed("[models file-35e25e8012f1dc1d-facebook--bart-large-cnn 1/1] RUN x", 11, **shard),
        Timed("[app file-35e25e8012f1dc1d-facebook--bart-large-cnn 1/1] RUN x", 11, **shard),
        Timed("[models] exporting to image", 3, started=t0, completed=t0 + timedelta(seconds=3)),
        Timed("[app] exporting to image", 4, started=t0 + timedelta(seconds=20), completed=t0 + timedelta(seconds=24)),
        Timed("[fetch-whisper-base-en 1/1] RUN x", 2, **fetch),  # a single-target build: no target in brackets
        Timed("[app app 13/14] LINK COPY --link src/ /app/src/", 0.2, **fetch),
    ]
    unique = unique_steps(steps)
    assert [s.name for s in unique] == [steps[i].name for i in (0, 2, 4, 5, 6, 7)]
    model_steps = [s for s in unique if _MODEL_STEP.search(s.name)]
    assert [s.seconds for s in model_steps] == [9, 11, 2]
    assert _span(model_steps) == 12.0


def test_the_layer_table_counts_a_models_file_layers_in_its_blob():
    from bench.__main__ import layer_table

    report = {
        "models_image": {"layers": ["sha256:rest", "sha256:shard1", "sha256:shard2", "sha256:whisper"]},
        "models": [
            {
                "id": "bart",
                "family": "huggingface",
                "files_bytes": 300,
                "bytes": 310,
                "models_image_layer": "sha256:rest",
                "files": [{"layer": "sha256:shard1"}, {"layer": "sha256:shard2"}],
            },
            {"id": "tiny", "family": "whisper", "files_bytes": 70, "bytes": 72, "models_image_layer": "sha256:whisper"},
        ],
    }
    blobs = [{"size": 11}, {"size": 150}, {"size": 149}, {"size": 71}]
    rows = {row["id"]: row for row in layer_table(report, blobs, spacy_unpacked=0)}
    assert rows["bart"]["blob"] == 11 + 150 + 149
    assert rows["tiny"]["blob"] == 71
