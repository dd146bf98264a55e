"""Debian's docker-registry (distribution 2.8) on 127.0.0.1, for the registry-cache tests and the benchmark.

The engine accepts plain HTTP to a registry on loopback, so no TLS set-up is needed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A registry serving `root/data` on a free loopback port (`host`) while the `with` block runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
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
            "version: 0.1\nlog:\n  level: warn\n"
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

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
