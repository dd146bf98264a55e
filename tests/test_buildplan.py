"""build.py's options and plan: typed options, a plan made without side effects, the drift check preload runs,
and what build.py does with a mirror on this machine's loopback (issue 12, items 4 and 5)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelbake.cache.spec import CacheBackend
from modelbake.errors import LockError, UsageError
from modelbake.image.network import choose_network, is_loopback_url
from modelbake.image.options import BuildOptions, parse_options
from modelbake.image.plan import make_plan, materialize
from modelbake.lockfile import Lock, LockedFile, LockedModel, spec_fields, write_lock
from modelbake.manifest import load_manifest
from plans import inputs_of, plan_of
from testkit.tinymodels import manifest_text

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "http://127.0.0.1:8765/whisper"


@pytest.fixture
def manifest(tmp_path) -> Path:
    """The tiny manifest with a lock beside it."""
    path = tmp_path / "m" / "models.toml"
    path.parent.mkdir()
    path.write_text(manifest_text(whisper_sha256="a" * 64, spacy_sha256="b" * 64))
    specs = load_manifest(path).models.values()
    entries = {
        s.id: LockedModel(s.id, s.family, spec_fields(s), "c" * 40, (LockedFile("f.bin", 10, "d" * 64),)) for s in specs
    }
    write_lock(Lock(models=entries), path.with_name("models.lock"))
    return path


def plan_for(manifest: Path, *argv: str, environ: dict[str, str] | None = None, work: Path | None = None, **facts):
    return plan_of(["--manifest", str(manifest), *argv], work or manifest.parent / "work", environ, **facts)


# --- item 4: typed options, pure planning ----------------------------------------------------------------


def test_options_are_typed_and_frozen():
    options = parse_options(["--mirror", f"whisper={LOOPBACK}/", "--cache", "local:/tmp/c", "--cache-timeout", "3"])
    assert isinstance(options, BuildOptions)
    assert dict(options.mirrors) == {"whisper": LOOPBACK}  # parsed: family -> base URL, trailing / dropped
    assert options.caches == (CacheBackend("local", "/tmp/c"),) and options.cache_timeout == 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.push = True  # type: ignore[misc]
    with pytest.raises(UsageError, match="--mirror 'bogus'"):
        parse_options(["--mirror", "bogus"])
    with pytest.raises(UsageError, match="--cache 'nope'"):
        parse_options(["--cache", "nope"])


BUILD_PY_FLAGS = {
    "--manifest",
    "--profile",
    "--models-only",
    "--tag",
    "--models-tag",
    "--base-image",
    "--context",
    "--mirror",
    "--ca-bundle",
    "--hf-token-file",
    "--wheelhouse",
    "--network",
    "--cache",
    "--cache-read-only",
    "--cache-timeout",
    "--cache-compression",
    "--models-cache-mode",
    "--cache-budget",
    "--layer-compression",
    "--app-layer-compression",
    "--source-date-epoch",
    "--refresh-models",
    "--no-cache",
    "--push",
    "--builder",
    "--platform",
    "--dry-run",
    "--json",
    "--quiet",
}  # every flag build.py had before its options became BuildOptions (README and docs/docker.md document them)


def test_no_flag_was_dropped_and_each_is_a_field():
    from modelbake.image.options import build_parser

    actions = [a for a in build_parser()._actions if a.dest != "help"]
    added = {"--file-layers-over", "--models-image", "--rawjson"}  # since: new options, none renamed
    assert {flag for a in actions for flag in a.option_strings} == BUILD_PY_FLAGS | added
    fields = {f.name for f in dataclasses.fields(BuildOptions)}
    assert {a.dest for a in actions} - {"mirror", "cache"} | {"mirrors", "caches"} == fields


def test_planning_writes_nothing_prints_nothing_and_probes_nothing(manifest, tmp_path, capsys):
    """A registry cache on a closed port, a gha cache and a missing lock: the plan still only reads."""
    manifest.with_name("models.lock").unlink()
    work = tmp_path / "work"
    env = {
        "ACTIONS_CACHE_SERVICE_V2": "true",
        "ACTIONS_RESULTS_URL": "http://127.0.0.1:9/",
        "ACTIONS_RUNTIME_TOKEN": _jwt(),
    }
    before = sorted(p for p in tmp_path.rglob("*"))
    plan = plan_for(manifest, "--cache", "registry:127.0.0.1:9/c", "--cache", "gha", environ=env, work=work)
    assert sorted(p for p in tmp_path.rglob("*")) == before and not work.exists()
    assert capsys.readouterr() == ("", "")
    assert plan.warnings == (
        f"{manifest.with_name('models.lock')} missing: models are fetched unpinned; run `modelbake lock`",
    )
    assert [(b.kind, b.gha_version) for b in plan.caches] == [("registry", 2), ("gha", 2)]
    # What the builds need is listed, and written by the I/O step only; the app's Dockerfile is the context's own.
    assert set(plan.files) == {work / "Dockerfile.models", work / "manifest/models.toml"}
    assert plan.targets["models"].dockerfile == work / "Dockerfile.models"
    assert plan.targets["app"].dockerfile == REPO / "Dockerfile"
    materialize(plan)
    assert (work / "manifest/models.toml").read_bytes() == manifest.read_bytes()
    assert (work / "Dockerfile.models").read_text().startswith("# Dockerfile.models: GENERATED")


def test_the_plan_reads_the_environment_it_is_given_only(manifest, monkeypatch):
    monkeypatch.setenv("GITHUB_REF_NAME", "from-os-environ")
    plan = plan_for(manifest, "--cache", "local:/tmp/c", environ={"GITHUB_REF_NAME": "feature/x"})
    app = plan.targets["app"]
    assert any("app-all-feature-x" in spec for spec in app.cache_from)
    assert not any("from-os-environ" in spec for spec in app.cache_from)
    with pytest.raises(UsageError, match="ACTIONS_CACHE_URL and ACTIONS_RUNTIME_TOKEN not set"):
        plan_for(manifest, "--cache", "gha", environ={})


def test_a_cache_the_probe_dropped_is_planned_out_once(manifest):
    """The probe runs while the inputs are gathered: the one plan has no trace of a dropped cache but its warning."""
    argv = ["--manifest", str(manifest), "--cache", "local:/tmp/a", "--cache", "registry:127.0.0.1:9/c"]
    inputs = inputs_of(argv, manifest.parent / "work")
    both = make_plan(inputs, parse_options(argv))
    assert any("127.0.0.1:9" in s for s in both.targets["models"].cache_from)  # the control: planned when it answers
    dropped = dataclasses.replace(inputs, caches=inputs.caches[:1], cache_warnings=("registry cache ... unreachable",))
    plan = make_plan(dropped, parse_options(argv))
    assert not any("127.0.0.1:9" in s for t in plan.targets.values() for s in t.cache_from + t.cache_to)
    assert plan.warnings[0] == "registry cache ... unreachable" and plan.files == both.files


def test_build_and_preload_share_one_drift_check(manifest, tmp_path):
    """A stale lock is the same error line from `python build.py` and `modelbake preload`."""
    manifest.write_text(manifest.read_text().replace('revision = "main"', 'revision = "v2"', 1))
    with pytest.raises(LockError) as built:
        plan_for(manifest)
    from modelbake.lockfile import read_lock
    from modelbake.preload import plan_from_manifest

    loaded = load_manifest(manifest)
    with pytest.raises(LockError) as preloaded:
        plan_from_manifest(loaded, read_lock(loaded.lock_path), loaded.select(None))
    assert built.value.message == preloaded.value.message
    assert (
        built.value.message
        == f"{manifest.with_name('models.lock')}: out of date: models.bart-map: manifest entry changed since the lock was written"
    )


# --- item 5: a mirror on this machine's loopback ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8765/whisper", True),
        ("http://127.3.2.1/x", True),
        ("http://[::1]:8765/x", True),
        ("http://[::ffff:127.0.0.1]:80/x", True),
        ("http://localhost:8765/x", True),
        ("http://mirror.localhost/x", True),
        ("http://0.0.0.0:8765/x", True),
        ("http://10.0.0.5:8765/x", False),
        ("https://127.example.com/x", False),
        ("https://huggingface.co", False),
    ],
)
def test_loopback_urls(url, loopback):
    assert is_loopback_url(url) is loopback


def _network(*argv: str, environ: dict[str, str] | None = None, mirror: str = LOOPBACK):
    return choose_network(parse_options(list(argv)), {"whisper": mirror}, environ or {})


def test_a_loopback_mirror_puts_the_models_build_on_the_host_network_and_says_so(manifest):
    plan = plan_for(manifest, "--mirror", f"whisper={LOOPBACK}")
    assert plan.targets["models"].network == "host" and plan.targets["app"].network is None
    assert plan.notes == (
        f"the models build runs with --network host: the whisper mirror {LOOPBACK} is on this machine's loopback, "
        "which build steps reach only on the host network",
    )
    # The manifest's own [mirrors] count too: they are what the mirrors secret holds.
    manifest.write_text(manifest.read_text() + '\n[mirrors]\nhuggingface = "http://localhost:9/huggingface"\n')
    assert plan_for(manifest).targets["models"].network == "host"
    # An engine reached through a local socket or loopback TCP is this machine's.
    for docker_host in ("unix:///run/docker.sock", "tcp://127.0.0.1:2375"):
        assert _network(environ={"DOCKER_HOST": docker_host}).models == "host"


def test_no_switch_without_a_loopback_mirror_or_when_the_network_is_given():
    assert _network(mirror="http://10.0.0.5:8765/whisper") == _network(
        "--network", "default", mirror="http://10.0.0.5/w"
    )
    assert _network(mirror="http://10.0.0.5:8765/whisper").models is None
    host = _network("--network", "host")
    assert (host.models, host.app, host.note) == ("host", "host", None)
    none = _network("--network", "none")
    assert (none.models, none.app, none.note) == ("none", "none", None)


@pytest.mark.parametrize(
    ("argv", "environ", "error", "hint"),
    [
        (["--network", "default"], {}, "--network default: the whisper mirror", "pass --network host"),
        (["--builder", "remote"], {}, "--builder remote: the whisper mirror", "serve the mirror on an address"),
        (
            [],
            {"DOCKER_HOST": "ssh://ci@builder"},
            "DOCKER_HOST=ssh://ci@builder: the whisper mirror",
            "this machine's engine",
        ),
        ([], {"DOCKER_HOST": "tcp://10.0.0.7:2376"}, "DOCKER_HOST=tcp://10.0.0.7:2376: the", "serve the mirror"),
    ],
)
def test_a_loopback_mirror_the_build_cannot_reach_stops_at_once(argv, environ, error, hint):
    with pytest.raises(UsageError) as exc:
        _network(*argv, environ=environ)
    assert exc.value.message.startswith(error) and LOOPBACK in exc.value.message and "loopback" in exc.value.message
    assert hint in (exc.value.hint or "") and "\n" not in exc.value.message


def test_build_py_stops_with_one_line_before_touching_docker(manifest):
    """What a user sees: one error line and a hint, in well under a second of work, no fetch retried."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PATH": "/nonexistent"}  # no docker on PATH at all
    argv = [sys.executable, str(REPO / "build.py"), "--manifest", str(manifest), "--mirror", f"whisper={LOOPBACK}"]
    began = time.monotonic()
    proc = subprocess.run([*argv, "--network", "default"], capture_output=True, text=True, env=env, timeout=60)
    took = time.monotonic() - began
    assert proc.returncode == 2 and took < 10, proc.stderr
    lines = proc.stderr.splitlines()
    assert [line for line in lines if line.startswith("error:")] == [
        f"error: --network default: the whisper mirror {LOOPBACK} is on this machine's loopback, which build steps "
        "reach only on the host network"
    ]
    assert any(line.startswith("hint: pass --network host") for line in lines)


def test_mirror_variables_the_build_does_not_forward_are_named(manifest):
    env = {"MODELBAKE_MIRROR_WHISPER": "http://10.0.0.5/whisper", "HF_ENDPOINT": "http://10.0.0.5/hf"}
    plan = plan_for(manifest, "--mirror", "huggingface=http://10.0.0.5/hf", environ=env)
    assert plan.warnings == (
        "MODELBAKE_MIRROR_WHISPER set here, but build steps get only --mirror and the manifest's [mirrors]: pass "
        "the mirror as --mirror FAMILY=URL",
    )


def _jwt() -> str:
    import base64
    import json

    def part(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    claims = {"ac": json.dumps([{"Scope": "refs/heads/main", "Permission": 3}]), "exp": 2**31, "nbf": 0}
    return f"{part({'alg': 'none'})}.{part(claims)}.sig"
