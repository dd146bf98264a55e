"""The mirror's Hugging Face routes: the Hub API huggingface_hub uses (`/api/models/{repo}/revision/{rev}`,
`/api/models/{repo}/tree/{rev}`, paged like the Hub's) and file downloads (`/{repo}/resolve/{rev}/{path}`, with
the Hub's ETag and X-Repo-Commit headers), answered from a hub cache (`hubcache.py`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode

from modelbake.mirror.handler import MirrorHandler
from modelbake.mirror.hubcache import REPO_PREFIXES, safe_parts

TREE_PAGE = 1000  # the Hub's page size for /tree ...
TREE_PAGE_EXPANDED = 50  # ... and with expand=true


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class HubRoutes(MirrorHandler):
    """`/huggingface/...`: what the Hub would answer, from the mirror's hub cache."""

    def _split_repo(
        self, repo_type: str, segs: list[str], keywords: set[str], bare: bool
    ) -> tuple[str, Path | None, list[str]] | None:
        """Split `org/name/<keyword>/...` or `name/<keyword>/...`; prefer the reading whose repo exists."""
        candidates = []
        for n in (2, 1):
            rest = segs[n:]
            if len(segs) >= n and ((rest and rest[0] in keywords) or (not rest and bare)):
                candidates.append(("/".join(segs[:n]), rest))
        hub = self.server.service._hub
        for repo_id, rest in candidates:
            repo_dir = hub.repo_dir(repo_type, repo_id)
            if repo_dir is not None:
                return repo_id, repo_dir, rest
        return (candidates[0][0], None, candidates[0][1]) if candidates else None

    def _repo_not_found(self, repo_type: str, repo_id: str) -> None:
        folder = "--".join([REPO_PREFIXES[repo_type], *repo_id.split("/")])
        hub_dir = self.server.service._hub.hub_dir
        self._error(
            404, f"repository {repo_id} not found in the mirror (no {hub_dir / folder}/snapshots)", "RepoNotFound"
        )

    def _commit(self, repo_dir: Path, repo_id: str, revision: str) -> str | None:
        commit = self.server.service._hub.resolve_revision(repo_dir, revision)
        if commit is None:
            self._error(
                404,
                f"revision {revision} of {repo_id} not found in the mirror "
                f"(no refs/{revision} and no snapshots/{revision})",
                "RevisionNotFound",
            )
        return commit

    def _huggingface(self, segs: list[str], raw: str, query: str) -> None:
        params = dict(parse_qsl(query, keep_blank_values=True))
        if segs[0] == "api":
            if len(segs) >= 3 and segs[1] in ("models", "datasets"):
                return self._hf_api(segs[1][:-1], segs[2:], params, raw, query)
            return self._error(404, f"Hub API endpoint not supported by the modelbake mirror: {unquote(raw)}")
        repo_type = "model"
        if segs[0] == "datasets":
            repo_type, segs = "dataset", segs[1:]
        found = self._split_repo(repo_type, segs, {"resolve"}, bare=False)
        if found is None:
            return self._error(
                404, f"not a Hub file URL (want /huggingface/<repo>/resolve/<rev>/<path>): {unquote(raw)}"
            )
        repo_id, repo_dir, rest = found
        if repo_dir is None:
            return self._repo_not_found(repo_type, repo_id)
        if len(rest) < 3:
            return self._error(404, f"no file path in {unquote(raw)}", "EntryNotFound")
        self._resolve(repo_id, repo_dir, rest[1], "/".join(rest[2:]))

    def _hf_api(self, repo_type: str, segs: list[str], params: dict[str, str], raw: str, query: str) -> None:
        found = self._split_repo(repo_type, segs, {"revision", "tree"}, bare=True)
        if found is None:
            return self._error(404, f"Hub API endpoint not supported by the modelbake mirror: {unquote(raw)}")
        repo_id, repo_dir, rest = found
        if repo_dir is None:
            return self._repo_not_found(repo_type, repo_id)
        if not rest:
            return self._repo_info(repo_type, repo_id, repo_dir, "main", params)
        if len(rest) < 2:
            return self._error(404, f"missing revision in {unquote(raw)}", "RevisionNotFound")
        if rest[0] == "revision":
            return self._repo_info(repo_type, repo_id, repo_dir, "/".join(rest[1:]), params)
        self._tree(repo_id, repo_dir, rest[1], "/".join(rest[2:]).strip("/"), params, raw, query)

    def _repo_info(self, repo_type: str, repo_id: str, repo_dir: Path, revision: str, params: dict[str, str]) -> None:
        commit = self._commit(repo_dir, repo_id, revision)
        if commit is None:
            return
        hub = self.server.service._hub
        when = hub.snapshot_time(repo_dir, commit)
        blobs = _truthy(params.get("blobs"))
        info: dict[str, object] = {
            "_id": commit[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": commit,
            "lastModified": when,
            "createdAt": when,
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [hub.sibling(f, blobs) for f in hub.files(repo_dir, commit)],
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        self._json(200, info)

    def _tree(
        self, repo_id: str, repo_dir: Path, revision: str, prefix: str, params: dict[str, str], raw: str, query: str
    ) -> None:
        commit = self._commit(repo_dir, repo_id, revision)
        if commit is None:
            return
        hub = self.server.service._hub
        entries = (
            hub.tree(repo_dir, commit, prefix, _truthy(params.get("recursive")))
            if (not prefix or safe_parts(prefix) is not None)
            else None
        )
        if entries is None:
            return self._error(
                404,
                f"{prefix} is not a directory of {repo_id}@{commit} in the mirror",
                "EntryNotFound",
                {"X-Repo-Commit": commit},
            )
        expand = _truthy(params.get("expand"))
        if expand:
            last = {
                "id": commit,
                "title": "snapshot served by modelbake mirror",
                "date": hub.snapshot_time(repo_dir, commit),
            }
            entries = [{**e, "lastCommit": last} for e in entries]
        try:
            cursor = max(0, int(params.get("cursor", "0")))
        except ValueError:
            return self._error(400, f"bad cursor {params.get('cursor')!r}")
        size = TREE_PAGE_EXPANDED if expand else TREE_PAGE
        headers = {"X-Repo-Commit": commit}
        if cursor + size < len(entries):
            # huggingface_hub follows `Link: <...>; rel="next"` with the URL as given: make it absolute.
            keep = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "cursor"]
            link = f"{self._base_url()}{raw}?{urlencode([*keep, ('cursor', str(cursor + size))])}"
            headers["Link"] = f'<{link}>; rel="next"'
        self._json(200, entries[cursor : cursor + size], headers)

    def _resolve(self, repo_id: str, repo_dir: Path, revision: str, path: str) -> None:
        commit = self._commit(repo_dir, repo_id, revision)
        if commit is None:
            return
        hub = self.server.service._hub
        f = hub.file(repo_dir, commit, path)
        if f is None:
            # X-Repo-Commit lets huggingface_hub cache the absence (.no_exist/<commit>/<path>), as with the Hub.
            return self._error(
                404, f"{path} not found in {repo_id}@{commit} in the mirror", "EntryNotFound", {"X-Repo-Commit": commit}
            )
        etag = hub.etag(f)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"'}
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(f.size)
        self._file(f.local, headers, unquote(self.path.partition("?")[0]))
