"""Which files of a directory any process read while a `with` block ran: Linux inotify's IN_ACCESS events.

For the local-cache restore test: the reader of a `type=local` cache is another process (buildx, or the
daemon), and atime is no evidence (`relatime` and `noatime` mounts skip the update). IN_ACCESS, not IN_OPEN:
the same build also exports to the directory, which may open a blob it already holds without reading it. Written by hand over libc
with ctypes because the standard library has no inotify binding and none of the project's dependencies brings
one; it needs three calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from pathlib import Path

IN_ACCESS = 0x00000001
IN_Q_OVERFLOW = 0x00004000
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name


class ReadWatch:
    """`with ReadWatch(directory) as watch: ...` then `watch.read`: the names of the files read in it."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.read: set[str] = set()
        self._fd = -1

    def __enter__(self) -> ReadWatch:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(fd, os.fsencode(self.directory), IN_ACCESS) < 0:
            errno = ctypes.get_errno()
            os.close(fd)
            raise OSError(errno, f"inotify_add_watch {self.directory}")
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._drain()
        finally:
            os.close(self._fd)

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                if mask & IN_Q_OVERFLOW:
                    raise RuntimeError(f"inotify queue overflowed watching {self.directory}: events were lost")
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                if mask & IN_ACCESS and name:
                    self.read.add(os.fsdecode(name))
                offset += _EVENT.size + length
