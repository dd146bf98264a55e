"""Debian's docker-registry (distribution 2.8) on 127.0.0.1, for the registry tests and the benchmark.

The engine accepts plain HTTP to a registry on loopback, so no TLS set-up is needed. The registry logs every
request as JSON (`response completed`, method, URI, status, bytes read); `uploaded_blobs()` reads which blobs
a push really sent (a blob the registry already holds is only asked about with HEAD, never uploaded), with
its size from the registry's storage.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


class Registry:
    """A registry serving `root/data` on a free loopback port (`host`) while the `with` block runs."""

    def __init__(self, root: Path, log_level: str = "info", address: str = "127.0.0.1") -> None:
        """`address`: any of 127.0.0.0/8 (all loopback on Linux, and all plain-HTTP registries to the engine)."""
        self.root = root
        self.log_level = log_level  # "info" or lower: the request log `uploaded_blobs` reads
        self.address = address
        self.proc: subprocess.Popen | None = None
        self.host = ""

    def __enter__(self) -> Registry:
        exe = shutil.which("docker-registry")
        if exe is None:
            raise RuntimeError("docker-registry missing: apt-get install docker-registry")
        self.root.mkdir(parents=True, exist_ok=True)
        port = free_port(self.address)
        config = self.root / "config.yml"
        config.write_text(
            f"version: 0.1\nlog:\n  level: {self.log_level}\n  formatter: json\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.data}\n"
            f"http:\n  addr: {self.address}:{port}\n"
        )
        with (self.root / "registry.log").open("wb") as log:
            self.proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://{self.address}:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((self.root / "registry.log").read_text())
            time.sleep(0.2)
        self.host = f"{self.address}:{port}"
        return self

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    def log_offset(self) -> int:
        """Where the log ends now: `uploaded_blobs(since=...)` then counts only what came after."""
        return self.log.stat().st_size

    def requests(self, since: int = 0) -> list[dict]:
        """Every request completed after log offset `since`: `method`, `uri`, `status`, `bytes_in`."""
        with self.log.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("msg") == "response completed":
                out.append(
                    {
                        "method": doc.get("http.request.method"),
                        "uri": doc.get("http.request.uri", ""),
                        "status": doc.get("http.response.status"),
                        "bytes_in": int(doc.get("http.request.contentlength") or 0),
                    }
                )
        return out

    def uploads(self, since: int = 0) -> list[tuple[str, str]]:
        """(repository, digest) of each blob upload completed after log offset `since`, in order: the `PUT
        .../blobs/uploads/<id>?digest=` that ends a chunked or streamed upload, or a monolithic `POST
        .../blobs/uploads/?digest=` (the distribution API allows both; a `POST ...?mount=` is a mount, no upload)."""
        found = []
        for request in self.requests(since):
            parts = urlsplit(request["uri"])
            query = parse_qs(parts.query)
            ends_upload = request["method"] == "PUT" or (request["method"] == "POST" and "mount" not in query)
            if ends_upload and "/blobs/uploads/" in parts.path and request["status"] == 201:
                repository = parts.path.removeprefix("/v2/").split("/blobs/uploads/")[0]
                found += [(repository, digest) for digest in query.get("digest", [])]
        return found

    def uploaded_blobs(self, since: int = 0) -> dict[str, int]:
        """Digest -> size of each blob uploaded after log offset `since` (`uploads`), whatever the repository."""
        return {digest: self.blob_size(digest) for _, digest in self.uploads(since)}

    def blob_size(self, digest: str) -> int:
        hexdigest = digest.removeprefix("sha256:")
        path = self.data / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
        return path.stat().st_size if path.is_file() else -1

    def manifest(self, name: str, reference: str) -> tuple[str, dict]:
        """(digest, manifest or index) of `name:reference` (or `@digest`)."""
        accept = ", ".join(
            [
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ]
        )
        r = httpx.get(f"http://{self.host}/v2/{name}/manifests/{reference}", headers={"Accept": accept}, timeout=30)
        r.raise_for_status()
        return r.headers["Docker-Content-Digest"], r.json()

    def blob_json(self, name: str, digest: str) -> dict:
        r = httpx.get(f"http://{self.host}/v2/{name}/blobs/{digest}", timeout=30, follow_redirects=True)
        r.raise_for_status()
        return r.json()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
