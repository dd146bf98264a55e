"""`modelbake mirror serve DIR`: the hubs' download protocols over a local directory.

Used by tests (with fault injection), by the offline demo, and by air-gapped builds.
"""

from modelbake.mirror.faults import Faults
from modelbake.mirror.requestlog import RequestRecord
from modelbake.mirror.server import MirrorServer, serve_forever

__all__ = ["Faults", "MirrorServer", "RequestRecord", "serve_forever"]
