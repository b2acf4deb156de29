"""The supervisor's fault matrix (``tests/supervisor/test_faults.py``), once per launcher.

The tests are imported unchanged; this directory's ``stack_factory`` fixture is parametrized
over "zygote" and "spawn", so exit detection, limits, output and restarts are held to the same
assertions for both ways of starting a plugin. One more fault only a zygote has: its death.
"""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from bot.rosey.plugins.process.child_exit import ForeignChild
from bot.rosey.plugins.process.zygote import shared_zygote
from bot.rosey.supervision.status import PluginState
from tests.supervisor.conftest import echo, faulty
from tests.supervisor.test_faults import *  # noqa: F403 - the matrix itself

pytestmark = pytest.mark.timeout(60)


# Only a zygote can die under its plugins.
@pytest.mark.parametrize("stack_factory", ["zygote"], indirect=True)
async def test_zygote_death_is_a_crash_of_every_plugin_and_all_come_back(stack_factory) -> None:
    stack = await stack_factory(echo(), faulty())
    processes = {name: stack.supervisor.get(name).process for name in ("echo", "faulty")}
    assert all(isinstance(p.process, ForeignChild) for p in processes.values())
    zygote = shared_zygote()  # the one this loop's plugins were forked from
    assert zygote.pid is not None and psutil.Process(processes["echo"].pid).ppid() == zygote.pid
    old_zygote, old_pids = zygote.pid, {name: p.pid for name, p in processes.items()}

    os.kill(old_zygote, signal.SIGKILL)
    for name in processes:
        plugin = await stack.back_up(name)
        assert plugin.last_exit == "killed by SIGKILL"
        assert plugin.process.pid != old_pids[name]
    assert zygote.pid not in (None, old_zygote)
    assert zygote.starts == 2  # restarted once, by the first plugin restart
    assert (await stack.command("echo", "again")).ok
    assert (await stack.command("faulty", "ok")).ok
    await asyncio.gather(
        *(stack.supervisor.wait_for_state(n, lambda p: p.state is PluginState.RUNNING, 5) for n in processes)
    )
