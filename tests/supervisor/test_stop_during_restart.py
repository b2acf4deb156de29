"""A stop that arrives while a restart's process is still being made stops that process too.

Between the old process's exit and the new one's creation (a zygote fork is awaited), there is
no process to signal; the stop must still end the run instead of leaving the new process running
and the stop waiting for it forever.
"""

from __future__ import annotations

import asyncio

import psutil
import pytest

from bot.rosey.supervision.status import PluginState

from .conftest import echo, faulty

pytestmark = pytest.mark.timeout(60)


async def test_a_stop_while_a_restart_is_being_made_stops_the_new_process(stack_factory) -> None:
    stack = await stack_factory(echo(), faulty())
    supervisor = stack.supervisor
    plugin = supervisor.get("faulty")
    first_pid = plugin.process.pid
    supervisor.kill("faulty", "test: restart it")
    # Woken by the STARTING transition: the new process is being made right now.
    await supervisor.wait_for_state(
        "faulty", lambda p: p.state is PluginState.STARTING and p.restarts >= 1, timeout=10
    )
    await asyncio.wait_for(supervisor.stop("faulty"), 15)
    assert plugin.state is PluginState.STOPPED
    assert not plugin.process.is_running()
    pid = plugin.process.pid
    assert pid is not None and pid != first_pid  # the restart did make a process ...
    assert (
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    )  # ... and it is gone
    assert (await stack.command("echo", "still", "here")).ok
