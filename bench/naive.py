"""The naive Dockerfile the benchmark compares against: models downloaded after `COPY . .`, in the app's stage.

Why: that is what most ML Dockerfiles do (and what STYLE.md calls the anti-pattern): any code edit changes the
`COPY . .` layer, so every model is downloaded and exported again in one big layer. To compare only that
difference, the naive image starts from the project's own `base` and `deps` stages (copied verbatim from the
Dockerfile, so both images reuse the same cached 1.6 GB venv layer), then one stage: `COPY . .` and one `RUN`
of bench/naive_fetch.py (urllib for Whisper, `pip install --target` for spaCy, huggingface_hub's
`snapshot_download` for the Hugging Face repos) from the same mirror at the same bandwidth.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.buildtrace import Timed, profile
from bench.enginecache import CA_BUNDLE, WHEELHOUSE

REPO = Path(__file__).resolve().parents[1]
MODELS_STAGE = "FROM ${MODELS_IMAGE} AS models"
NAIVE_STAGE = """
# --- the naive part: the app's code, then every model downloaded in the same stage ---
FROM deps AS naive
WORKDIR /app
COPY . .
ARG MIRROR
RUN MIRROR="$MIRROR" /opt/venv/bin/python src/download_models.py /models
ENV PATH=/opt/venv/bin:$PATH \\
    PYTHONPATH=/app/src:/models/spacy \\
    HF_HUB_OFFLINE=1 \\
    HF_HUB_CACHE=/models/huggingface/hub \\
    MODELBAKE_WHISPER_ROOT=/models/whisper
"""


def naive_dockerfile(project_dockerfile: str) -> str:
    """The project's Dockerfile up to its models stage (base, wheels, manifest, deps), plus the naive stage."""
    head, found, _ = project_dockerfile.partition(MODELS_STAGE)
    if not found:
        raise RuntimeError(f"Dockerfile: no line {MODELS_STAGE!r} to cut at")
    return head.rstrip() + "\n" + NAIVE_STAGE


def naive_plan(manifest_path: Path, profile: str) -> list[dict]:
    """What the naive download fetches, from the lock (the same pins modelbake builds): paths under the mirror."""
    from modelbake.lockfile import read_lock
    from modelbake.manifest import load_manifest
    from modelbake.mirrors import spacy_url, whisper_url

    manifest = load_manifest(manifest_path)
    lock = read_lock(manifest.lock_path)
    if lock is None:
        raise RuntimeError(f"{manifest.lock_path}: missing; lock the manifest first")
    plan: list[dict] = []
    for spec in manifest.select(profile):
        entry = lock.models[spec.id]
        item = {"id": spec.id, "family": spec.family}
        if spec.family == "whisper":
            item |= {"path": whisper_url("/whisper", spec.name, entry.revision), "file": f"{spec.name}.pt"}
        elif spec.family == "spacy":
            item |= {"path": spacy_url("/spacy", spec.name, spec.version)}
        else:
            item |= {"repo": spec.repo, "revision": entry.revision, "include": list(entry.spec.get("include", []))}
        plan.append(item)
    return plan


def prepare_context(repo: Path, plan: list[dict]) -> None:
    """The download script and its plan into the repository copy's src/ (the .dockerignore allow-list keeps src/)."""
    shutil.copyfile(REPO / "bench" / "naive_fetch.py", repo / "src" / "download_models.py")
    (repo / "src" / "naive_models.json").write_text(json.dumps(plan, indent=1) + "\n")


@dataclass
class NaiveBuild:
    wall: float
    ok: bool
    steps: list[Timed] = field(default_factory=list)
    error: str = ""


def build_naive(
    repo: Path, dockerfile: Path, tag: str, mirror_url: str, base_image: str, trace: Path, target: str = "naive"
) -> NaiveBuild:
    """One `docker buildx build` of the naive image (or of its `deps` stage, to warm the engine up) through
    testkit's single-build runner, BuildKit's rawjson progress kept for the step profile."""
    from modelbake.errors import ModelbakeError
    from modelbake.image.bake import BuildSpec
    from testkit.buildx import run_build

    spec = BuildSpec(
        context=repo,
        dockerfile=dockerfile,
        target=target,
        tags=[tag],
        build_args={"BASE_IMAGE": base_image, "MIRROR": mirror_url},
        build_contexts={"wheels": str(WHEELHOUSE)} if WHEELHOUSE.is_dir() else {},
        secrets={"ca": CA_BUNDLE} if CA_BUNDLE.is_file() else {},
        network="host",
    )
    trace.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    started = time.perf_counter()
    try:
        run_build(spec, echo=lines.append)
        ok, error = True, ""
    except ModelbakeError as exc:
        ok, error = False, str(exc).splitlines()[0][:300]
    wall = time.perf_counter() - started
    (trace / f"{target}.rawjson").write_text("".join(lines))
    return NaiveBuild(round(wall, 2), ok, profile("".join(lines)), error)
