"""Which cache protocol a `--cache gha` build speaks, decided from the step's variables as buildx does."""

from __future__ import annotations

import pytest

from modelbake.cache.ghaenv import parse_go_bool, resolve, token_scopes
from modelbake.errors import UsageError
from testkit.ghacache import make_token

pytestmark = pytest.mark.unit

TOKEN = make_token(["refs/heads/main"])
V2_URL = "https://results-receiver.actions.githubusercontent.com/"
V1_URL = "https://artifactcache.actions.githubusercontent.com/abc/"


def test_a_hosted_runner_today_speaks_v2_to_the_results_url():
    """What a step gets on github.com now: V2 set, both URLs (the legacy one may linger), a token."""
    env = {"ACTIONS_CACHE_SERVICE_V2": "True", "ACTIONS_RESULTS_URL": V2_URL, "ACTIONS_CACHE_URL": V1_URL,
           "ACTIONS_RUNTIME_TOKEN": TOKEN}  # fmt: skip
    target = resolve(env)
    assert (target.version, target.url) == (2, V2_URL)
    assert target.reason == "ACTIONS_CACHE_SERVICE_V2=True"


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
def test_service_v2_takes_go_booleans(value):
    assert parse_go_bool(value) is True
    env = {"ACTIONS_CACHE_SERVICE_V2": value, "ACTIONS_RESULTS_URL": V2_URL, "ACTIONS_RUNTIME_TOKEN": TOKEN}
    assert resolve(env).version == 2


@pytest.mark.parametrize("value", ["yes", "on", "", "2"])
def test_anything_else_is_not_v2_as_for_buildx(value):
    """buildx ignores a value ParseBool rejects: with a legacy URL, that is v1."""
    env = {"ACTIONS_CACHE_SERVICE_V2": value, "ACTIONS_CACHE_URL": V1_URL, "ACTIONS_RUNTIME_TOKEN": TOKEN}
    assert resolve(env).version == 1


def test_github_enterprise_server_speaks_v1_to_the_cache_url():
    target = resolve({"ACTIONS_CACHE_URL": V1_URL, "ACTIONS_RUNTIME_TOKEN": TOKEN})
    assert (target.version, target.url) == (1, V1_URL)


def test_only_a_results_url_without_v2_is_stopped_not_silently_skipped():
    """buildx would pass ACTIONS_RESULTS_URL as a v1 `url` (and buildx 0.13 ignores it): never what you want."""
    with pytest.raises(UsageError) as err:
        resolve({"ACTIONS_RESULTS_URL": "http://127.0.0.1:9/", "ACTIONS_RUNTIME_TOKEN": TOKEN})
    assert "ACTIONS_CACHE_SERVICE_V2 is not" in err.value.message and "\n" not in err.value.message
    # BuildKit's own guess: GitHub's results host means v2 even without the variable
    assert resolve({"ACTIONS_RESULTS_URL": V2_URL, "ACTIONS_RUNTIME_TOKEN": TOKEN}).version == 2


def test_force_version_wins_and_is_validated():
    env = {"ACTIONS_CACHE_SERVICE_V2": "true", "ACTIONS_RESULTS_URL": V2_URL, "ACTIONS_CACHE_URL": V1_URL,
           "ACTIONS_RUNTIME_TOKEN": TOKEN}  # fmt: skip
    assert resolve({**env, "ACTIONS_CACHE_API_FORCE_VERSION": "v1"}).url == V1_URL
    assert resolve({**env, "ACTIONS_CACHE_API_FORCE_VERSION": "v2"}).version == 2
    with pytest.raises(UsageError, match="expected v1 or v2"):
        resolve({**env, "ACTIONS_CACHE_API_FORCE_VERSION": "3"})


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"ACTIONS_CACHE_SERVICE_V2": "1", "ACTIONS_RUNTIME_TOKEN": TOKEN}, "ACTIONS_RESULTS_URL"),
        ({"ACTIONS_CACHE_SERVICE_V2": "1", "ACTIONS_RESULTS_URL": V2_URL}, "ACTIONS_RUNTIME_TOKEN"),
        ({"ACTIONS_RUNTIME_TOKEN": TOKEN}, "ACTIONS_CACHE_URL"),
        ({}, "ACTIONS_CACHE_URL and ACTIONS_RUNTIME_TOKEN"),
    ],
)
def test_what_buildx_would_silently_skip_is_one_usage_error(env, missing):
    with pytest.raises(UsageError) as err:
        resolve(env)
    assert f"{missing} not set" in err.value.message and "silently" in err.value.message


def test_a_token_that_is_no_jwt_is_caught_before_buildkit_fails_on_it():
    with pytest.raises(UsageError, match="not a usable runtime token: not a JWT"):
        resolve({"ACTIONS_CACHE_SERVICE_V2": "1", "ACTIONS_RESULTS_URL": V2_URL, "ACTIONS_RUNTIME_TOKEN": "t"})


def test_the_index_key_is_the_one_buildkit_writes():
    """`index-<scope>-1-<8 hex of sha256(the token's write scope)>`. The expected keys are not recomputed here:
    they are what BuildKit (dockerd 28.5) wrote for these tokens' scopes, before its `#<n>` suffix, in
    test_ghacache_buildkit's test_the_index_key_buildkit_writes_is_the_one_build_py_looks_up, which checks the
    same against the engine on every Docker run."""
    main = make_token(["refs/heads/main"])
    pr = make_token([("refs/heads/main", 1), "refs/pull/7/merge"])
    assert token_scopes(pr) == [("refs/heads/main", 1), ("refs/pull/7/merge", 3)]
    for token, written in ((main, "f921bd05"), (pr, "3f31b38f")):
        env = {"ACTIONS_CACHE_SERVICE_V2": "1", "ACTIONS_RESULTS_URL": V2_URL, "ACTIONS_RUNTIME_TOKEN": token}
        assert resolve(env).index_key("modelbake-models-test-abc") == f"index-modelbake-models-test-abc-1-{written}"
