"""Which network a build's steps get: the host network for a models build whose mirror is on this machine's
loopback (said in one note), or one error line at once where no network can reach it."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..constants import DOCKER_HOST_ENV
from ..errors import UsageError
from .options import BuildOptions


@dataclass(frozen=True)
class NetworkChoice:
    """The `network` of each target, and the line that says so when build.py chose it."""

    models: str | None
    app: str | None
    note: str | None = None


def choose_network(options: BuildOptions, mirrors: Mapping[str, str], environ: Mapping[str, str]) -> NetworkChoice:
    """Host networking for the models build when a mirror is on this machine's loopback, or a UsageError at once.

    A build step has a network namespace of its own: 127.0.0.1 there is the step's own loopback, so a mirror
    on the client's loopback answers "Connection refused" after every retry of every file. Only the host
    network reaches it, and only when the build runs on this machine's engine.

    Without `--network`, build.py uses the host network itself for the models build and says so in one line,
    rather than stopping: the user has already said where the models come from, the host network is the one
    way the fetch steps reach that address, and the alternative (stop, tell them to add `--network host`)
    asks for a flag whose only possible value is that one. The app build keeps the default network (it
    fetches no model), so its layers' cache keys do not move. build.py stops at once with a hint instead
    where the host network cannot help or was refused: `--network default` given explicitly, a `--builder`
    (another BuildKit, possibly on another machine or in a container: build.py does not switch it to host
    networking), or `DOCKER_HOST` naming another machine's engine. `--network host` and `--network none`
    are taken as they are.
    """
    given = options.network
    base = None if given in (None, "default") else given
    local = {family: url for family, url in sorted(mirrors.items()) if is_loopback_url(url)}
    if given in ("host", "none") or not local:
        return NetworkChoice(base, base)
    family, url = next(iter(local.items()))
    where = f"the {family} mirror {url} is on this machine's loopback"
    if given == "default":
        raise UsageError(
            f"--network default: {where}, which build steps reach only on the host network",
            hint="pass --network host, or leave --network out and build.py uses the host network for the models build",
        )
    if options.builder:
        raise UsageError(
            f"--builder {options.builder}: {where}, which another builder's steps cannot reach",
            hint="serve the mirror on an address that builder reaches and pass it as --mirror, or pass --network "
            "host if the builder runs on this machine with host networking",
        )
    docker_host = environ.get(DOCKER_HOST_ENV, "")
    if docker_host and not docker_host.startswith("unix://") and not is_loopback_url(docker_host):
        raise UsageError(
            f"DOCKER_HOST={docker_host}: {where}, which that engine's build steps cannot reach",
            hint="serve the mirror on an address that engine reaches and pass it as --mirror, or build on this "
            "machine's engine",
        )
    note = f"the models build runs with --network host: {where}, which build steps reach only on the host network"
    return NetworkChoice("host", None, note)


def is_loopback_url(url: str) -> bool:
    """Whether `url` names this machine itself: 127.0.0.0/8, ::1 (also IPv4-mapped), 0.0.0.0, localhost."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or address.is_unspecified or bool(mapped and mapped.is_loopback)


__all__ = ["NetworkChoice", "choose_network", "is_loopback_url"]
