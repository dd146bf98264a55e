"""HTTP server that speaks the hubs' protocols over a local directory.

Here: the routing by family (`/huggingface`, `/whisper`, `/spacy`), Whisper's and spaCy's files, and the
server itself; the Hub's routes are `hubroutes.py`'s, the request plumbing and file bodies `handler.py`'s.
Built on the standard library's `ThreadingHTTPServer` on purpose (the scaffolding, shared with the GitHub
Actions cache emulator, is `modelbake.httpserve`): the mirror runs with no extra dependency, and one thread per
connection is plenty for a handful of parallel downloads.
The libraries' own download code runs against it (huggingface_hub with `HF_ENDPOINT`, plain GETs for
Whisper checkpoints and spaCy wheels), so what works here works against the real hubs.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from modelbake.constants import FAMILIES
from modelbake.errors import UsageError
from modelbake.httpserve import BackgroundServer, serve_until_interrupted
from modelbake.mirror.faults import Faults, Throttle
from modelbake.mirror.files import NotInMirror, spacy_file, whisper_file
from modelbake.mirror.hubcache import DigestCache, HubCache
from modelbake.mirror.hubroutes import HubRoutes
from modelbake.mirror.requestlog import RequestLog, RequestRecord

# What the `html` fault answers: the kind of page a captive portal or a proxy's login serves with status 200.
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign in.</body></html>\n"


class _Handler(HubRoutes):
    server_version = "modelbake-mirror"
    timeout = 60  # idle keep-alive connections are closed after this

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
