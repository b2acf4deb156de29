"""Who opened a file, seen from outside the plugin: inotify on the host (ctypes, no library).

A sandboxed plugin's refused ``open()`` never reaches the file, so no ``IN_OPEN`` is reported;
an allowed one is, whatever mount namespace the plugin runs in (the inode is the same). Events
are queued by the kernel when the open happens, so reading them after the plugin has answered
needs no waiting.
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

__all__ = ["OpenWatch"]

_IN_OPEN = 0x20
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")


class OpenWatch:
    """``with OpenWatch(a, b) as watch: ...; watch.opened()`` -> the watched paths opened so far."""

    def __init__(self, *paths: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._paths: dict[int, Path] = {}
        self._seen: set[Path] = set()
        for path in paths:
            self.add(path)

    def add(self, path: Path) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), _IN_OPEN)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self._paths[wd] = path

    def opened(self) -> set[Path]:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return set(self._seen)
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & _IN_OPEN and wd in self._paths:
                    self._seen.add(self._paths[wd])

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> OpenWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
