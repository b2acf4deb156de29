"""The disk quota holds while the bot's own event loop is busy.

How far past its quota a plugin gets is what it writes between two checks. When the checks ran on
the event loop, a loop busy in long pieces (a burst of work; a machine so loaded that the bot is
not scheduled) spaced them out by as much: one run of the quota test reached 429 MB against
64 MB + 320 MB of slack. The checks now run on a thread of their own, and a plugin over its quota
is frozen there at once, killed when the loop gets to it.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.processes import wait_pid_gone
from tests.security.conftest import StartRosey
from tests.security.test_resource_limits import (
    ATTACK_MB,
    FILLER,
    OVERSHOOT_MB,
    QUOTA_MB,
    killed_for,
    real_usage_mb,
    reported_mb,
)

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(120)]

STALL = 0.5  # seconds the loop is held each time: five disk intervals
MAX_STALLS = 60


def stall_until(done: asyncio.Future[None], stop: asyncio.Event) -> None:
    """Hold the running loop for ``STALL`` seconds at a time, one loop iteration apart, until
    ``stop`` is set (or ``MAX_STALLS`` were made); then resolve ``done``."""
    loop = asyncio.get_running_loop()
    left = MAX_STALLS

    def stall() -> None:
        nonlocal left
        if stop.is_set() or left == 0:
            done.set_result(None)
            return
        time.sleep(STALL)  # the condition under test: the core's loop is not available
        left -= 1
        loop.call_soon(stall)

    loop.call_soon(stall)


async def test_a_plugin_filling_its_data_dir_is_stopped_within_the_bound_while_the_loop_is_busy(
    start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start_rosey(
        {"filler": {"path": str(FILLER), "max_disk_mb": QUOTA_MB}, "canary": {}}, launcher=launcher
    )
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    data_dir = rosey.state_dir / "data" / "filler"
    process = supervisor.get("filler").process
    assert process is not None and process.pid is not None
    first_pid = process.pid
    stop = asyncio.Event()
    stalls_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    stall_until(stalls_done, stop)  # from before the command: the filler writes as soon as it has it
    try:
        await rosey.attempt("filler", "fill", "files", ATTACK_MB)
        plugin = await supervisor.wait_for_state("filler", killed_for("disk "), timeout=60)
    finally:
        stop.set()
        await stalls_done
    assert await wait_pid_gone(first_pid, 5)
    assert plugin.last_exit is not None
    assert QUOTA_MB < reported_mb(plugin.last_exit) < QUOTA_MB + OVERSHOOT_MB, plugin.last_exit
    assert real_usage_mb(data_dir) < QUOTA_MB + OVERSHOOT_MB
    assert rosey.row("canary")["restarts"] == 0
