"""Seeing a child process exit the moment it happens, without polling.

On Linux a pidfd becomes readable when the process exits; the event loop watches it like a
socket (~2 ms from exit to callback). Elsewhere one waiting thread per child does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable

__all__ = ["ExitWatcher", "describe_exit"]

ExitCallback = Callable[[int], None]


def describe_exit(returncode: int | None) -> str:
    """Human words for a return code: 'exit code 3', 'killed by SIGSEGV', 'exited cleanly'."""
    if returncode is None:
        return "still running"
    if returncode == 0:
        return "exited cleanly"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class ExitWatcher:
    """Reaps one ``Popen`` child as soon as it exits and tells whoever is waiting."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._loop = asyncio.get_running_loop()
        self._exited = asyncio.Event()
        self._callbacks: list[ExitCallback] = []
        self.returncode: int | None = None
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            self._loop.run_in_executor(None, self._wait_in_thread)
        else:
            self._loop.add_reader(self._pidfd, self._on_pidfd_readable)

    @property
    def exited(self) -> bool:
        return self._exited.is_set()

    def add_callback(self, callback: ExitCallback) -> None:
        """Call ``callback(returncode)`` once, on the event loop, when the child exits."""
        if self.returncode is not None:
            self._loop.call_soon(callback, self.returncode)
        else:
            self._callbacks.append(callback)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def _on_pidfd_readable(self) -> None:
        returncode = self._process.poll()
        if returncode is None:  # spurious wake-up; the pidfd stays readable until exit
            return
        self._close_pidfd()
        self._finish(returncode)

    def _wait_in_thread(self) -> None:
        returncode = self._process.wait()
        self._loop.call_soon_threadsafe(self._finish, returncode)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _finish(self, returncode: int) -> None:
        if self._exited.is_set():
            return
        self.returncode = returncode
        self._exited.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(returncode)

    def close(self) -> None:
        """Stop watching (the loop is going away); the child is not touched."""
        self._close_pidfd()
