"""The core's own stalls are not blamed on its plugins.

A liveness ping times out when the plugin does not answer in time, but also when the core's own
event loop is not there to read the answer (a burst of work, a starved machine). The watchdog
measures its loop's lateness around each ping and only counts a miss the plugin had time to avoid.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.rosey.supervision.loop_lag import LoopLag
from bot.rosey.supervision.watchdog import WatchdogConfig

from .conftest import echo

pytestmark = pytest.mark.timeout(30)

PINGS = WatchdogConfig(sweep_interval=10.0, ping_interval=0.05, ping_timeout=0.1, missed_pings_limit=3)
STALL = 0.2  # twice the ping timeout


async def stall_the_loop(times: int) -> None:
    """Block the running loop for ``STALL`` seconds, ``times`` times, one loop iteration apart.

    A ping's round trip takes several iterations, so every ping sent meanwhile times out.
    """
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = times

    def stall() -> None:
        nonlocal left
        time.sleep(STALL)  # the fault under test: the core's loop is not available
        left -= 1
        if left:
            loop.call_soon(stall)
        else:
            done.set_result(None)

    loop.call_soon(stall)
    await done


async def test_pings_missed_while_the_core_stalled_are_not_the_plugins(stack_factory) -> None:
    stack = await stack_factory(echo(), watchdog=PINGS)
    await stall_the_loop(30)  # 6 s, a ping round every ~4 stalls, each timing out
    plugin = stack.supervisor.get("echo")
    assert (plugin.restarts, plugin.last_exit) == (0, None)
    assert (await stack.command("echo", "after")).ok
    excused = stack.watchdog.excused_pings  # the stalls did make pings time out
    assert excused >= PINGS.missed_pings_limit, excused


async def test_loop_lag_adds_up_the_lateness_since_a_moment() -> None:
    lag = LoopLag(tick=0.01)
    lag.start()
    try:
        await asyncio.sleep(0.05)  # a few punctual ticks first
        before = time.monotonic()
        assert lag.lag_since(before) < 0.05
        time.sleep(0.2)  # noqa: ASYNC251 - the stall being measured
        assert lag.lag_since(before) >= 0.15  # the overdue tick counts before it has run
        await asyncio.sleep(0.03)
        assert 0.15 <= lag.lag_since(before) < 1.0
        assert lag.lag_since(time.monotonic()) < 0.05
    finally:
        await lag.stop()
