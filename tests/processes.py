"""Test helpers for real processes: wait for exits on events (pidfd), never on timers."""

from __future__ import annotations

import asyncio
import contextlib
import os


async def wait_pid_gone(pid: int, timeout: float) -> bool:
    """True once process ``pid`` (not necessarily our child) has exited, False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    gone = asyncio.Event()
    loop.add_reader(fd, gone.set)
    try:
        await asyncio.wait_for(gone.wait(), timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, 9)
