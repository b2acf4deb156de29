"""Start-up edge cases: a command during on_start, a plugin that cannot even be built."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.errors import PluginStartError
from bot.rosey.plugins.plugin_runner import PluginProcess
from bot.rosey.services.router import CoreRouter
from bot.rosey.supervision.spec import PluginSpec
from bot.rosey.supervision.status import PluginState
from bot.rosey.supervision.supervisor import Supervisor

pytestmark = pytest.mark.timeout(30)

SLOW = Path(__file__).parent / "fixtures" / "slow_start_plugin.py"


async def test_a_command_during_on_start_waits_for_it(nats_url: str) -> None:
    bus = EventBus(nats_url, name="test")
    await bus.connect()
    waiting = asyncio.Event()

    async def on_waiting(_: Event) -> None:
        waiting.set()

    await bus.subscribe("rosey.plugins.slowstart.waiting", on_waiting)
    await bus.flush()
    plugin = PluginProcess("slowstart", SLOW, nats_url)
    starting = asyncio.create_task(plugin.start())
    router = CoreRouter(bus)
    try:
        await asyncio.wait_for(waiting.wait(), 15)  # subscribed to commands, on_start not done
        command = asyncio.create_task(router.execute("slowstart", [], timeout=15))
        await bus.flush()
        await bus.publish("rosey.events.release_slowstart", {}, "test")
        outcome = await command
        assert outcome.ok and outcome.message == "initialized", outcome
        await starting
    finally:
        starting.cancel()
        await plugin.stop()
        await bus.disconnect()


async def test_a_plugin_that_cannot_be_built_fails_fast_with_the_reason() -> None:
    def factory(spec: PluginSpec) -> PluginProcess:
        raise ValueError("max_open_files must be at least 16")

    supervisor = Supervisor(None, [PluginSpec(name="bad", path=SLOW)], factory)
    results = await asyncio.wait_for(supervisor.start_all(), 10)
    error = results["bad"]
    assert isinstance(error, PluginStartError) and "max_open_files must be at least 16" in str(error)
    plugin = supervisor.get("bad")
    assert plugin.state is PluginState.FAILED and "cannot be started" in (plugin.failure_reason or "")
