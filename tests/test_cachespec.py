"""build.py's cache options: scopes per image, read-only for untrusted refs, the runner check, the probe."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from modelbake.cachespec import parse_cache, probe, require_gha_environment, specs_for, usable_backends
from modelbake.errors import UsageError
from modelbake.report import CacheTraffic, ModelLayer, Report, StageSummary, budget_warning, format_markdown

pytestmark = pytest.mark.unit

TINY = '[models.w]\nfamily = "whisper"\nname = "tiny.en"\nsha256 = "' + "0" * 64 + '"\n'
GHA_ENV = {"ACTIONS_CACHE_URL": "http://127.0.0.1:9/", "ACTIONS_RUNTIME_TOKEN": "t", "GITHUB_REF_NAME": "feature/x"}


def test_gha_scopes_models_by_lock_hash_and_app_by_branch():
    backends = [parse_cache("gha,scope=ci")]
    models = specs_for(backends, "models", "test", "abc123", environ=GHA_ENV)
    assert models.cache_from == ["type=gha,scope=ci-models-test-abc123,timeout=10m"]
    assert models.cache_to == [
        "type=gha,scope=ci-models-test-abc123,mode=max,compression=zstd,force-compression=true,"
        "ignore-error=true,timeout=10m"
    ]
    app = specs_for(backends, "app", "test", "abc123", environ=GHA_ENV)
    # The branch's own scope first, then the default branch's as a fallback; writes go to the branch only.
    assert app.cache_from == [
        "type=gha,scope=ci-app-test-feature-x,timeout=10m",
        "type=gha,scope=ci-app-test-main,timeout=10m",
    ]
    assert app.cache_to == [
        "type=gha,scope=ci-app-test-feature-x,mode=min,compression=zstd,force-compression=true,"
        "ignore-error=true,timeout=10m"
    ]


def test_a_new_lock_hash_is_a_new_models_scope():
    backends = [parse_cache("gha")]
    one = specs_for(backends, "models", "prod", "aaaa", environ=GHA_ENV).cache_from
    two = specs_for(backends, "models", "prod", "bbbb", environ=GHA_ENV).cache_from
    assert one != two and "scope=modelbake-models-prod-aaaa" in one[0]


def test_cache_compression_is_forced_on_every_export():
    backends = [parse_cache(v) for v in ("gha", "local:/tmp/c", "registry:127.0.0.1:5000/cache")]
    specs = specs_for(backends, "models", "t", "p", compression="uncompressed", environ=GHA_ENV)
    assert len(specs.cache_to) == 3
    assert all(",compression=uncompressed,force-compression=true," in s for s in specs.cache_to)
    assert not any("compression" in s for s in specs.cache_from)
    with pytest.raises(UsageError, match="--cache-compression 'lz4'"):
        specs_for(backends, "models", "t", "p", compression="lz4", environ=GHA_ENV)


def test_read_only_imports_and_never_exports():
    backends = [parse_cache(v) for v in ("gha", "local:/tmp/c", "registry:127.0.0.1:5000/cache", "type=inline")]
    specs = specs_for(backends, "models", "test", "p", read_only=True, environ=GHA_ENV)
    assert specs.cache_to == [] and len(specs.cache_from) == 4


def test_registry_refs_get_a_tag_per_scope():
    (spec,) = specs_for([parse_cache("registry:127.0.0.1:5000/cache")], "models", "t", "p", environ={}).cache_to
    assert spec.startswith("type=registry,ref=127.0.0.1:5000/cache:models-t-p,mode=max")
    (spec,) = specs_for([parse_cache("registry:host/cache:v1")], "models", "t", "p", environ={}).cache_from
    assert spec == "type=registry,ref=host/cache:v1-models-t-p"


@pytest.mark.parametrize("value", ["gha,scope=a b", "gha,color=red", "ftp:x", "local:", "registry"])
def test_bad_cache_values_are_usage_errors(value):
    with pytest.raises(UsageError, match="--cache"):
        parse_cache(value)


def test_gha_without_the_runner_variables_stops():
    with pytest.raises(UsageError) as err:
        require_gha_environment({"ACTIONS_RUNTIME_TOKEN": "t"})
    assert "ACTIONS_CACHE_URL or ACTIONS_RESULTS_URL not set" in err.value.message
    require_gha_environment({"ACTIONS_RESULTS_URL": "https://x/", "ACTIONS_RUNTIME_TOKEN": "t"})


def test_build_py_gha_without_variables_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    from modelbake.imagebuild import main

    for name in ("ACTIONS_CACHE_URL", "ACTIONS_RESULTS_URL", "ACTIONS_RUNTIME_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    manifest = tmp_path / "models.toml"
    manifest.write_text(TINY)
    assert main(["--manifest", str(manifest), "--cache", "gha", "--models-only"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--cache gha" in errors[0] and "silently" in errors[0]


@pytest.mark.loopback
def test_a_cache_server_that_is_down_is_skipped_with_a_warning():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens here
    env = {"ACTIONS_CACHE_URL": f"http://127.0.0.1:{port}/", "ACTIONS_RUNTIME_TOKEN": "t"}
    assert "ConnectError" in (probe(parse_cache("gha"), 2, environ=env) or "")
    warnings: list[str] = []
    kept = usable_backends(
        [parse_cache(f"registry:127.0.0.1:{port}/c"), parse_cache("local:/tmp/x")], 2, warnings.append
    )
    assert [b.kind for b in kept] == ["local"]
    assert (
        len(warnings) == 1
        and warnings[0].startswith("registry cache 127.0.0.1:")
        and "building without it" in warnings[0]
    )


@pytest.mark.loopback
def test_a_stalled_cache_server_is_given_up_on_within_the_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    env = {"ACTIONS_CACHE_URL": f"http://127.0.0.1:{listener.getsockname()[1]}/", "ACTIONS_RUNTIME_TOKEN": "t"}
    started = time.perf_counter()
    reason = probe(parse_cache("gha"), 1.0, environ=env)
    assert reason is not None and "no answer" in reason and "within 1 s" in reason
    assert time.perf_counter() - started < 5
    listener.close()
    for conn in held:
        conn.close()


def _report(sizes: dict[str, int]) -> Report:
    return Report(
        models=[
            ModelLayer(id=k, family="huggingface", path=f"/m/{k}", layer="sha256:" + "a" * 64, bytes=v)
            for k, v in sizes.items()
        ],
        stages=[StageSummary("models", "fetch-a", "cached", 0.0), StageSummary("app", "app", "built", 3.0)],
        caches=[CacheTraffic("models", "exporting to GitHub Actions Cache", "export", 5_000_000, 1.5)],
    )


def test_budget_warning_names_the_biggest_layers():
    report = _report({"small": 10**6, "big": 6 * 10**9, "mid": 5 * 10**9})
    warning = budget_warning(report, 10e9)
    assert warning is not None and "over the cache budget of 10000.0 MB" in warning
    assert warning.index("big 6000.0 MB") < warning.index("mid 5000.0 MB") < warning.index("small")
    assert budget_warning(_report({"a": 10**6}), 10e9) is None


def test_markdown_summary_has_stage_model_and_cache_tables():
    report = _report({"bart": 558 * 10**6})
    report.warnings.append("something odd")
    text = format_markdown(report)
    assert "1 of 2 stages from the cache." in text
    assert "| models | `fetch-a` | cached | 0.0 |" in text
    assert "| bart | huggingface | `sha256:aaaaaaaaaaaa` | 558.0 MB | ? |" in text
    assert "| models | exporting to GitHub Actions Cache | export | 5.0 MB | 1.5 |" in text
    assert ":warning: something odd" in text


def test_models_cache_mode_min_keeps_the_model_layers_only():
    backends = [parse_cache("local:/c")]
    (spec,) = specs_for(backends, "models", "t", "p", models_mode="min", environ={}).cache_to
    assert ",mode=min," in spec
    (app,) = specs_for(backends, "app", "t", "p", models_mode="max", environ={}).cache_to
    assert ",mode=min," in app  # the app is always min: its deps layer is worth caching, its code is not
    with pytest.raises(UsageError, match="--models-cache-mode 'all'"):
        specs_for(backends, "models", "t", "p", models_mode="all", environ={})

