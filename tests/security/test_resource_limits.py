"""Resource limits of `[plugins.NAME]`, enforced on a hostile plugin through the real RoseyApp.

The watchdog reads each plugin's usage from outside (psutil, the file system) and kills the
process with the reason in words; the supervisor restarts it per its policy. Each test checks
the effect from outside the plugin (its process gone, the reason in the status) while a healthy
canary keeps answering.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil
import pytest

from bot.rosey.supervision.supervisor import ManagedPlugin
from tests.processes import wait_pid_gone
from tests.security.conftest import FIXTURES, StartRosey

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(60)]

SPINNER = FIXTURES / "spinner_plugin.py"


def killed_for(prefix: str) -> Callable[[ManagedPlugin], bool]:
    """A ``wait_for_state`` predicate: the last run ended in a kill whose reason starts with ``prefix``."""

    def killed(plugin: ManagedPlugin) -> bool:
        return plugin.last_exit is not None and plugin.last_exit.startswith(prefix)

    return killed


async def test_a_short_cpu_window_is_honoured(start_rosey: StartRosey, launcher: str) -> None:
    """max_cpu_percent = 30 over cpu_window_seconds = 5: two spinning threads are killed for CPU."""
    limits = {"path": str(SPINNER), "max_cpu_percent": 30, "cpu_window_seconds": 5}
    rosey = await start_rosey({"spinner": limits, "canary": {}}, launcher=launcher)
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    traffic = rosey.traffic()
    process = supervisor.get("spinner").process
    assert process is not None and process.pid is not None
    first_pid = process.pid
    spinning = psutil.Process(first_pid)
    await rosey.attempt("spinner", "spin", "2")
    started = time.monotonic()
    plugin = await supervisor.wait_for_state("spinner", killed_for("cpu "), timeout=25)
    took = time.monotonic() - started
    assert plugin.last_exit is not None and "> limit 30% for " in plugin.last_exit, plugin.last_exit
    assert await wait_pid_gone(first_pid, 5)  # the spinning process itself is gone
    assert not spinning.is_running()
    # The window, give or take a sweep: the first reading above the limit may cover time before
    # the spin began (it is an average since the previous sweep).
    assert 4 <= took < 12, took
    await traffic.assert_all_answered()
    assert rosey.row("canary")["restarts"] == 0
