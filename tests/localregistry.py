"""Debian's docker-registry (distribution 2.8) on 127.0.0.1, for the registry-cache tests and the benchmark.

The engine accepts plain HTTP to a registry on loopback, so no TLS set-up is needed. With `log_level="info"` the
registry logs every request it completes, which is how the tests see what a push uploaded (`uploaded_blobs`).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A registry serving `root/data` on a free loopback port (`host`) while the `with` block runs."""

    def __init__(self, root: Path, log_level: str = "warn") -> None:
        self.root = root
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None
        self.host = ""

    def __enter__(self) -> Registry:
        exe = shutil.which("docker-registry")
        if exe is None:
            raise RuntimeError("docker-registry missing: apt-get install docker-registry")
        self.root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: " + self.log_level + "\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.data}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        with (self.root / "registry.log").open("wb") as log:
            self.proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((self.root / "registry.log").read_text())
            time.sleep(0.2)
        self.host = f"127.0.0.1:{port}"
        return self

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    def log_offset(self) -> int:
        """Where the log ends now: pass it to `uploaded_blobs` to see one push only."""
        return self.log.stat().st_size

    def uploaded_blobs(self, since: int = 0) -> dict[str, int]:
        """Digest -> bytes of every blob uploaded (an upload completed by `PUT ...?digest=`) since log offset
        `since`; needs `log_level="info"`. Sizes come from the registry's storage."""
        with self.log.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        found = {}
        for line in text.splitlines():
            if "response completed" not in line or "http.request.method=PUT" not in line:
                continue
            m = _UPLOAD_RE.search(line)
            if m:
                digest = unquote(m["digest"])
                found[digest] = self.blob_size(digest)
        return found

    def blob_size(self, digest: str) -> int:
        hexdigest = digest.removeprefix("sha256:")
        path = self.data / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
        return path.stat().st_size if path.is_file() else -1

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# distribution 2.8 at level info: `msg="response completed" ... http.request.method=PUT
# http.request.uri="/v2/<name>/blobs/uploads/<uuid>?_state=...&digest=sha256%3A<hex>" ... http.response.status=201`
_UPLOAD_RE = re.compile(r'http\.request\.uri="/v2/[^"]*/blobs/uploads/[^"]*[?&]digest=(?P<digest>sha256(?:%3A|:)[0-9a-f]{64})')
