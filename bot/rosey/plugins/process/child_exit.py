"""Seeing a child process exit the moment it happens, without polling.

On Linux a pidfd becomes readable when the process exits; the event loop watches it like a
socket (~2 ms from exit to callback). Elsewhere one waiting thread per child does the same.

Two kinds of children are watched the same way:

* a ``subprocess.Popen`` we forked ourselves: we reap it, so its pidfd plus ``poll()`` give the
  exit status;
* a :class:`ForeignChild`: a process somebody else forked and reaps (a plugin forked by the
  zygote, see :mod:`bot.rosey.plugins.process.zygote`). Only the reaper can learn its exit status, so
  the reaper *reports* it; we hold a pidfd to signal it without any pid-reuse race and to see it
  die even when the reaper is gone (then we report what killed it ourselves).

Either way the return code is Popen-style (negative: the signal that killed it), so
:func:`describe_exit` and the supervisor cannot tell the two apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from typing import IO, Any

__all__ = ["ExitWatcher", "ForeignChild", "describe_exit"]

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


class ForeignChild:
    """A process that is not our child, with the subset of ``Popen`` the runner uses.

    ``pid``, ``returncode``, ``poll()``, ``send_signal()``, ``terminate()``, ``kill()`` and the
    ``stdout``/``stderr`` read ends behave as on ``Popen``. Signals go through the pidfd, so a
    pid recycled after the exit is never hit. Whoever reaps the process calls :meth:`report`
    with the Popen-style return code; if that reaper dies first, :meth:`orphaned` waits on the
    pidfd and reports the given return code once the process is gone.
    """

    def __init__(
        self,
        pid: int,
        pidfd: int,
        *,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
        args: Any = None,
    ) -> None:
        self.pid = pid
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._pidfd: int | None = pidfd
        self._callbacks: list[ExitCallback] = []
        self._orphan_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<ForeignChild pid={self.pid} returncode={self.returncode}>"

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal the process, unless it is known to be gone (like ``Popen.send_signal``)."""
        if self.returncode is not None or self._pidfd is None:
            return
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def add_exit_callback(self, callback: ExitCallback) -> None:
        """Call ``callback(returncode)`` once when the exit is reported (at once if it was)."""
        if self.returncode is not None:
            callback(self.returncode)
        else:
            self._callbacks.append(callback)

    def report(self, returncode: int) -> None:
        """The reaper's word: the process is gone (reaped) and this is how it ended."""
        if self.returncode is not None:
            return
        self.returncode = returncode
        self.close()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(returncode)

    def orphaned(self, returncode: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """The reaper is gone: report ``returncode`` as soon as the pidfd says the process exited."""
        if self.returncode is not None or self._pidfd is None:
            return
        loop = loop or asyncio.get_running_loop()
        self._orphan_loop = loop
        loop.add_reader(self._pidfd, self.report, returncode)

    def close(self) -> None:
        """Release the pidfd (after the exit, or when the loop goes away); the process is not touched."""
        if self._pidfd is None:
            return
        if self._orphan_loop is not None and not self._orphan_loop.is_closed():
            with contextlib.suppress(ValueError, OSError):
                self._orphan_loop.remove_reader(self._pidfd)
        self._orphan_loop = None
        os.close(self._pidfd)
        self._pidfd = None


class ExitWatcher:
    """Learns as soon as one child (``Popen`` or :class:`ForeignChild`) exits; tells whoever waits."""

    def __init__(self, process: subprocess.Popen[bytes] | ForeignChild) -> None:
        self._process = process
        self._loop = asyncio.get_running_loop()
        self._exited = asyncio.Event()
        self._callbacks: list[ExitCallback] = []
        self.returncode: int | None = None
        self._pidfd: int | None = None
        if isinstance(process, ForeignChild):
            # Its reaper reports the status; deferred so callbacks always run on a later turn.
            process.add_exit_callback(self._finish_soon)
            return
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
        assert isinstance(self._process, subprocess.Popen)
        returncode = self._process.poll()
        if returncode is None:  # spurious wake-up; the pidfd stays readable until exit
            return
        self._close_pidfd()
        self._finish(returncode)

    def _finish_soon(self, returncode: int) -> None:
        self._loop.call_soon(self._finish, returncode)

    def _wait_in_thread(self) -> None:
        assert isinstance(self._process, subprocess.Popen)
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
