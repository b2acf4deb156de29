"""``stop()`` while a restart is starting the next process: the new process is stopped too."""

from __future__ import annotations

import asyncio

import pytest

from bot.rosey.supervision.status import PluginState

from .conftest import faulty

pytestmark = pytest.mark.timeout(30)


async def test_stop_while_the_restart_is_starting_stops_the_new_process(stack_factory) -> None:
    stack = await stack_factory(faulty())
    supervisor = stack.supervisor
    await stack.command("faulty", "exit", timeout=10.0)  # crashes: restarted at once
    plugin = await supervisor.wait_for_state(
        "faulty", lambda p: p.state is PluginState.STARTING and p.restarts >= 1, 10
    )
    # The new process may not exist yet (a fork from the zygote is under way): stop() finds
    # nothing running, and the start that completes after it must not leave a process behind.
    await asyncio.wait_for(supervisor.stop("faulty"), 10)
    assert plugin.state is PluginState.STOPPED
    assert plugin.process is not None and not plugin.process.is_running()
