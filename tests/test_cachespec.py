"""build.py's cache options: scopes per image, read-only for untrusted refs, compression, the budget."""

from __future__ import annotations

import pytest

from modelbake.cache.budget import budget_warning, footprint
from modelbake.cache.spec import parse_cache, specs_for
from modelbake.errors import UsageError
from modelbake.image.report import CacheTraffic, ImageInfo, ModelLayer, Report, StageSummary, format_markdown

pytestmark = pytest.mark.unit

TINY = '[models.w]\nfamily = "whisper"\nname = "tiny.en"\nsha256 = "' + "0" * 64 + '"\n'
GHA_ENV = {"GITHUB_REF_NAME": "feature/x"}


def test_gha_scopes_models_by_lock_hash_and_app_by_branch():
    backends = [parse_cache("gha,scope=ci")]
    models = specs_for(backends, "models", "test", "abc123", environ=GHA_ENV)
    # No url= and no token= (buildx reads the runner's variables: a token in argv shows in every `ps`);
    # version= is the protocol ghaenv resolved, so BuildKit and the probe agree.
    assert models.cache_from == ["type=gha,scope=ci-models-test-abc123,version=2,timeout=10m"]
    assert models.cache_to == ["type=gha,scope=ci-models-test-abc123,version=2,mode=max,ignore-error=true,timeout=10m"]
    app = specs_for(backends, "app", "test", "abc123", environ=GHA_ENV)
    # The branch's own scope first, then the default branch's as a fallback; writes go to the branch only.
    assert app.cache_from == [
        "type=gha,scope=ci-app-test-feature-x,version=2,timeout=10m",
        "type=gha,scope=ci-app-test-main,version=2,timeout=10m",
    ]
    assert app.cache_to == ["type=gha,scope=ci-app-test-feature-x,version=2,mode=min,ignore-error=true,timeout=10m"]
    ghes = parse_cache("gha")
    ghes.gha_version = 1
    assert specs_for([ghes], "models", "t", "p", environ={}).cache_from == [
        "type=gha,scope=modelbake-models-t-p,version=1,timeout=10m"
    ]


def test_a_new_lock_hash_is_a_new_models_scope():
    backends = [parse_cache("gha")]
    one = specs_for(backends, "models", "prod", "aaaa", environ=GHA_ENV).cache_from
    two = specs_for(backends, "models", "prod", "bbbb", environ=GHA_ENV).cache_from
    assert one != two and "scope=modelbake-models-prod-aaaa" in one[0]


def test_cache_compression_is_forced_on_local_and_registry_exports_and_never_claimed_for_gha():
    backends = [parse_cache(v) for v in ("gha", "local:/tmp/c", "registry:127.0.0.1:5000/cache")]
    specs = specs_for(backends, "models", "t", "p", compression="uncompressed", environ=GHA_ENV)
    gha, local, registry = specs.cache_to
    assert "compression" not in gha  # BuildKit's gha exporter takes no compression option
    assert all(",compression=uncompressed,force-compression=true," in s for s in (local, registry))
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


def _report(sizes: dict[str, int]) -> Report:
    return Report(
        models=[
            ModelLayer(id=k, family="huggingface", path=f"/m/{k}", layer="sha256:" + "a" * 64, bytes=v)
            for k, v in sizes.items()
        ],
        stages=[StageSummary("models", "fetch-a", "cached", 0.0), StageSummary("app", "app", "built", 3.0)],
        caches=[CacheTraffic("models", "exporting to GitHub Actions Cache", "export", 5_000_000, 1.5)],
    )


def test_the_budget_counts_what_the_gha_exports_store():
    """mode=max stores the models twice (model layers and fetch steps); the app's own layers share the budget,
    its model layers (the models image's blobs) count once."""
    report = _report({"whisper": 3 * 10**9, "bart": 1 * 10**9})  # 4 GB of model layers
    report.models_image = ImageInfo("m", "sha256:m", 4 * 10**9)
    report.image = ImageInfo("app", "sha256:app", 7 * 10**9)  # base + deps (3 GB) + the model layers + code
    found = footprint(report, "max")
    assert (found.models, found.app, found.total) == (8 * 10**9, 3 * 10**9, 11 * 10**9)
    warning = budget_warning(found, 10e9)
    assert warning is not None and "store about 11.0 GB" in warning and "over the cache budget of 10.0 GB" in warning
    assert "2 x 4.0 GB with --models-cache-mode max" in warning and "app scope up to 3.0 GB per branch" in warning
    assert "--models-cache-mode min (saves 4.0 GB)" in warning and "--cache-budget" in warning
    minimal = footprint(report, "min")
    assert minimal.total == 7 * 10**9 and budget_warning(minimal, 10e9) is None
    assert budget_warning(minimal, 6e9) is not None and "--models-cache-mode min" not in budget_warning(minimal, 6e9)
    report.image = report.models_image  # --models-only: no app scope
    assert footprint(report, "max").app == 0


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
