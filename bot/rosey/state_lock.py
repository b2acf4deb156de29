"""One ``rosey run`` per state directory: an exclusive lock on ``<state_dir>/rosey.lock``.

Two bots in one directory would overwrite each other's runtime file and NATS configuration,
share the plugins' data directories, and the first to stop would delete the runtime file of the
other. The lock is ``flock(2)``: the kernel drops it when its holder dies, however it dies, so a
killed bot never leaves a lock that blocks the next start. The file also says who holds it (pid
and start time), for the refusal message; its content is advice, the lock is the truth. The
descriptor is not inherited (close-on-exec, and no child is forked with it), so plugins and
nats-server cannot keep the lock alive after Rosey is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from bot.rosey.errors import AlreadyRunning

__all__ = ["LOCK_FILENAME", "StateLock"]

LOCK_FILENAME = "rosey.lock"


class StateLock:
    """``acquire()`` or raise :class:`AlreadyRunning`; ``release()`` when the bot has stopped."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise AlreadyRunning(
                f"Rosey is already running here ({holder}; state directory {self.path.parent})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started_at": time.time()}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # the next reader finds no stale holder
        os.close(fd)  # closing the only descriptor drops the lock


def _read_holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        pid = int(data["pid"])
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(data["started_at"])))
    except (OSError, ValueError, KeyError, TypeError):
        return "another process holds its lock"
    return f"pid {pid}, started {started}"
