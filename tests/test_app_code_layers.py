"""An app-code edit costs the code's own layers only: after the first app-code COPY, the app stage of the Dockerfile
has no instruction that touches the filesystem.

Why: the app starts FROM the models image and takes the base's root filesystem and the venv as `COPY --link`
layers. A later instruction that makes files (WORKDIR, RUN, a COPY without --link) makes BuildKit merge all of
those layers into one filesystem first, on every code edit (measured: 7-8 s per rebuild on the tiny models,
against about 1 s with WORKDIR before the code).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import BASE_IMAGE, CA_BUNDLE, mirror_args, wheelhouse_args
from testkit.checkout import copy_checkout

REPO = Path(__file__).resolve().parents[1]
METADATA_ONLY = {"USER", "ENTRYPOINT", "CMD", "ENV", "LABEL", "EXPOSE", "STOPSIGNAL", "HEALTHCHECK", "ARG", "SHELL"}


def app_stage(dockerfile: str) -> list[str]:
    """The app stage's instructions, one string each (continuation lines joined, comments dropped)."""
    text = dockerfile.replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("FROM ") and line.endswith(" AS app"))
    return lines[start:]


def after_code(stage: list[str]) -> list[str]:
    """The instructions after the first app-code COPY (`COPY ... src/ /app/src/` or the entrypoint)."""
    first = next(
        i for i, line in enumerate(stage) if line.startswith("COPY") and "/app/" in line or "entrypoint" in line
    )
    return stage[first:]


@pytest.mark.unit
def test_nothing_after_the_app_code_touches_the_filesystem():
    tail = after_code(app_stage((REPO / "Dockerfile").read_text()))
    copies = [line for line in tail if line.split()[0] in ("COPY", "ADD")]
    assert copies and all("--link" in line for line in copies), copies
    others = [line for line in tail if line.split()[0] not in ("COPY", "ADD")]
    assert others and all(line.split()[0] in METADATA_ONLY for line in others), others


@pytest.mark.unit
def test_the_check_finds_a_workdir_after_the_code():
    bad = "FROM models AS app\nCOPY --link src/ /app/src/\nUSER 1\nWORKDIR /app\n"
    tail = after_code(app_stage(bad))
    assert [line for line in tail if line.split()[0] not in METADATA_ONLY | {"COPY"}] == ["WORKDIR /app"]


@pytest.mark.docker
def test_an_app_code_edit_runs_only_the_code_layer(docker_client, images, tiny_locked, mirror, tmp_path):
    """build.py twice, an edit of the app's code between: the second build's app steps that ran (not cached)
    are the code's COPY alone (its layer and its link), as the rawjson trace says."""
    from modelbake.image.rawjson import parse_rawjson

    repo = copy_checkout(tmp_path / "repo")
    run = uuid.uuid4().hex[:8]
    tag, models_tag = f"modelbake-test/code-app:{run}", f"modelbake-test/code-models:{run}"
    images += [tag, models_tag]
    args = ["--manifest", str(tiny_locked), "--profile", "test", "--base-image", BASE_IMAGE, "--network", "host"]
    args += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    args += [*mirror_args(mirror), *wheelhouse_args(), "--tag", tag, "--models-tag", models_tag, "--quiet"]
    ran: list[list[str]] = []
    for n in range(2):
        settings = repo / "src" / "podcast_pipeline" / "settings.py"
        settings.write_text(settings.read_text() + f"# edit {n} {run}\n")
        trace = tmp_path / f"build{n}.rawjson"
        proc = subprocess.run(
            [
                sys.executable,
                str(repo / "build.py"),
                *args,
                "--rawjson",
                str(trace),
                "--json",
                str(tmp_path / "r.json"),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stderr
        steps, _ = parse_rawjson(trace.read_text())
        ran.append([s.name for s in steps if s.target == "app" and s.stage == "app" and not s.cached and s.completed])
    rebuilt = ran[1]
    assert rebuilt and all("COPY --link src/ /app/src/" in name for name in rebuilt), rebuilt
    assert json.loads((tmp_path / "r.json").read_text())["models_at_bottom"] is True
