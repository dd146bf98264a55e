"""HTTP server that speaks the hubs' protocols over a local directory.

Built on the standard library's `ThreadingHTTPServer` on purpose (the scaffolding, shared with the GitHub
Actions cache emulator, is `modelbake.httpserve`): the mirror runs with no extra dependency, and one thread per
connection is plenty for a handful of parallel downloads.
The libraries' own download code runs against it (huggingface_hub with `HF_ENDPOINT`, plain GETs for
Whisper checkpoints and spaCy wheels), so what works here works against the real hubs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode

from modelbake.errors import UsageError
from modelbake.httpserve import (
    BackgroundServer,
    RangeNotSatisfiable,
    TrackedHandler,
    TrackingHTTPServer,
    serve_until_interrupted,
)
from modelbake.httpserve import parse_range as parse_range  # re-exported: it was defined here
from modelbake.mirror.faults import Faults, Throttle
from modelbake.mirror.files import NotInMirror, spacy_file, whisper_file
from modelbake.mirror.hubcache import REPO_PREFIXES, DigestCache, HubCache, safe_parts
from modelbake.mirror.requestlog import RequestLog, RequestRecord

CHUNK = 1024 * 1024
TREE_PAGE = 1000  # the Hub's page size for /tree ...
TREE_PAGE_EXPANDED = 50  # ... and with expand=true
FAMILIES = ("huggingface", "whisper", "spacy")
# What the `html` fault answers: the kind of page a captive portal or a proxy's login serves with status 200.
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign in.</body></html>\n"


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class _Handler(TrackedHandler):
    server_version = "modelbake-mirror"
    timeout = 60  # idle keep-alive connections are closed after this
    server: TrackingHTTPServer[MirrorServer]

    _record: RequestRecord | None = None

    # -- plumbing (the rest is TrackedHandler's) ------------------------------------------------------
    def send_response(self, code: int, message: str | None = None) -> None:
        path = getattr(self, "path", "")
        rng = self.headers.get("Range") if getattr(self, "headers", None) is not None else None
        self._record = RequestRecord(self.command or "?", path, code, range=rng)
        self.server.service._log.append(self._record)
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_GET

    def _read_only(self) -> None:
        self._record = None
        self.close_connection = True  # the body was not read
        self._json(
            405,
            {"error": f"the modelbake mirror is read-only: {self.command} {self.path}"},
            {"Connection": "close", "Allow": "GET, HEAD"},
        )
        self.server.service._log.finish(self._record)  # type: ignore[arg-type]

    do_POST = do_PUT = do_DELETE = do_PATCH = _read_only

    def _handle(self) -> None:
        self._record = None
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # one clear line to the client, never a traceback on the server's stderr
            if self._record is None:
                self._error(500, f"mirror error: {type(e).__name__}: {e}")
            else:
                self.close_connection = True
        finally:
            if self._record is not None:
                self.server.service._log.finish(self._record)

    def _write(self, data: bytes) -> None:
        assert self._record is not None
        # Counted before the write: a client that has read everything finds the record complete.
        self._record.bytes_sent += len(data)
        try:
            self.wfile.write(data)
        except OSError:
            self._record.bytes_sent -= len(data)
            raise

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self._write(body)

    def _error(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        extra = dict(headers or {})
        if code:
            extra["X-Error-Code"] = code
        self._json(status, {"error": message}, extra)

    # -- routing --------------------------------------------------------------------------------------
    def _route(self) -> None:
        raw, _, query = self.path.partition("?")
        decoded = unquote(raw)
        faults = self.server.service.faults
        if faults.is_not_found(decoded):
            code = "EntryNotFound" if "/resolve/" in decoded else None
            return self._error(404, f"not found (injected fault): {decoded}", code)
        if faults.take_fail(decoded):
            return self._error(503, f"service unavailable (injected fault): {decoded}")
        if faults.matches(faults.redirect_loop, decoded):
            return self._send(302, b"", {"Location": self.path})  # the same URL, forever
        if faults.matches(faults.html, decoded):
            return self._send(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        segs = [unquote(s) for s in raw.split("/")[1:]]
        family, rest = segs[0], segs[1:]
        if family == "" and not rest:
            return self._index()
        if family == "huggingface" and rest:
            return self._huggingface(rest, raw, query)
        if family == "whisper":
            return self._whisper(rest, decoded)
        if family == "spacy":
            return self._spacy(rest, decoded)
        return self._error(404, f"unknown path {decoded}: the mirror serves /huggingface, /whisper and /spacy")

    def _index(self) -> None:
        base = self._base_url()
        self._json(200, {"service": "modelbake mirror", "mirrors": {f: f"{base}/{f}" for f in FAMILIES}})

    def _whisper(self, parts: list[str], decoded: str) -> None:
        mirror = self.server.service
        try:
            if len(parts) != 2:
                raise NotInMirror(f"not a Whisper checkpoint URL (want /whisper/<sha256>/<name>.pt): {decoded}")
            local = whisper_file(mirror.root, mirror._digests, parts[0], parts[1])
        except NotInMirror as e:
            return self._error(404, str(e))
        self._file(local, {}, decoded)

    def _spacy(self, parts: list[str], decoded: str) -> None:
        try:
            local = spacy_file(self.server.service.root, parts)
        except NotInMirror as e:
            return self._error(404, str(e))
        self._file(local, {}, decoded)

    # -- Hugging Face ---------------------------------------------------------------------------------
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

    # -- file bodies ----------------------------------------------------------------------------------
    def _file(self, local: Path, headers: dict[str, str], decoded: str) -> None:
        """Stream `local` in chunks, honouring Range, HEAD, and the file faults (corrupt, reset, truncate,
        no_content_length, bandwidth)."""
        mirror = self.server.service
        faults = mirror.faults
        chunked = faults.matches(faults.no_content_length, decoded)
        with open(local, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            try:
                span = self._file_headers(size, headers, chunked=chunked)
            except RangeNotSatisfiable as e:
                return self._error(
                    416, f"range {e} outside {decoded} ({size} bytes)", headers={"Content-Range": f"bytes */{size}"}
                )
            if span is None:
                return  # HEAD
            start, end = span
            length = end - start + 1
            flip_at = size // 2 if size and faults.should_corrupt(decoded) else -1
            remaining = length
            if faults.matches(faults.truncate, decoded):  # the body always ends at the file's middle
                cut, remaining = True, max(0, min(length, size // 2 - start))
            elif cut := faults.take_reset(decoded):
                remaining = length // 2
            fh.seek(start)
            pos = start
            while remaining > 0:
                rate = faults.bandwidth
                step = min(CHUNK, max(4096, int(rate / 20))) if rate else CHUNK
                data = fh.read(min(step, remaining))
                if not data:
                    break  # the file shrank under us: the short body makes the client fail loudly
                if pos <= flip_at < pos + len(data):
                    flipped = bytearray(data)
                    flipped[flip_at - pos] ^= 0xFF
                    data = bytes(flipped)
                if rate:
                    mirror._throttle.wait(len(data), rate)
                if chunked:  # http.server has no chunked writer: the framing is RFC 9112's, size in hex
                    self.wfile.write(b"%x\r\n" % len(data))
                self._write(data)
                if chunked:
                    self.wfile.write(b"\r\n")
                pos += len(data)
                remaining -= len(data)
            if chunked and not cut and remaining <= 0:
                self.wfile.write(b"0\r\n\r\n")  # the last chunk: the body is complete
        if cut or remaining > 0:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class MirrorServer(BackgroundServer):
    """The mirror on a background daemon thread (start/stop/wait); a context manager for tests.

    `faults` injects failures, `requests` is what clients asked for. `url` is known after start().
    """

    handler = _Handler
    label = "mirror"

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None) -> None:
        super().__init__(host, port)
        self.root = Path(root)
        self.faults = Faults()
        self._log = RequestLog(log_path)
        self._digests = DigestCache()
        self._hub = HubCache(self.root, self._digests)
        self._throttle = Throttle()

    def _prepare(self) -> None:
        if not self.root.is_dir():
            raise UsageError(f"mirror directory {self.root} does not exist or is not a directory")
        self.root = self.root.resolve()
        self._hub = HubCache(self.root, self._digests)

    def _opened(self) -> None:
        self._log.open()

    def _closed(self) -> None:
        self._log.close()

    @property
    def mirrors(self) -> dict[str, str]:
        """Base URL per family, as `--mirror`/`MODELBAKE_MIRROR_<FAMILY>` take them."""
        return {family: f"{self.url}/{family}" for family in FAMILIES}

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        return self._log.snapshot()

    def requests_for(self, substring: str) -> list[RequestRecord]:
        """Requests whose path (raw or decoded) contains `substring`."""
        return self._log.matching(substring)

    def clear_requests(self) -> None:
        self._log.clear()


def serve_forever(root: Path, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None) -> None:
    """Serve `root` until Ctrl-C or SIGTERM (`modelbake mirror serve DIR`); prints one line with the URLs."""
    server = MirrorServer(root, host, port, log_path).start()
    m = server.mirrors
    print(
        f"modelbake mirror: serving {root} on {server.url} "
        f"(huggingface={m['huggingface']}, whisper={m['whisper']}, spacy={m['spacy']})",
        flush=True,
    )
    serve_until_interrupted(server)
