"""`python -m testkit.ghacache serve`: a local GitHub Actions cache service (the v2 protocol) for BuildKit's `type=gha`.

Used by tests and benchmarks of the `--cache gha` path off GitHub, driven with the runner's own variables:

    with GhaCacheServer(tmp_path / "gha") as gha:
        subprocess.run([..., "docker", "buildx", "build", "--cache-to", "type=gha,scope=models", ...],
                       env={**os.environ, **gha.runner_env()})
        assert gha.bytes_uploaded > 0
"""

from testkit.ghacache.faults import Faults
from testkit.ghacache.requestlog import CacheRequest
from testkit.ghacache.server import GhaCacheServer, serve_forever
from testkit.ghacache.store import GO_ACTIONS_CACHE_VERSION, Entry
from testkit.ghacache.token import Scope, make_token, parse_token

__all__ = [
    "GO_ACTIONS_CACHE_VERSION",
    "CacheRequest",
    "Entry",
    "Faults",
    "GhaCacheServer",
    "Scope",
    "make_token",
    "parse_token",
    "serve_forever",
]
