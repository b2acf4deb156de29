"""A real plugin at max_concurrency 1 and 3: commands start in the order sent and never past the limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.rosey.core.event_bus import EventBus
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.services.router import CoreRouter

pytestmark = pytest.mark.timeout(60)

SERIAL = Path(__file__).parent / "fixtures" / "serial_plugin.py"


@pytest.mark.parametrize("limit", [1, 3])
async def test_commands_start_in_order_and_within_the_limit(nats_url: str, limit: int) -> None:
    bus = EventBus(nats_url, name="test")
    await bus.connect()
    plugin = PluginProcess(
        "serial",
        SERIAL,
        nats_url,
        options=ProcessOptions(extra_env={"SERIAL_MAX": str(limit)}),
    )
    try:
        await plugin.start()
        router = CoreRouter(bus)
        for _ in range(3):  # the plugin's counters carry over: later rounds start where the last ended
            outcomes = await asyncio.gather(
                *(router.execute("serial", [str(i)], timeout=20) for i in range(30))
            )
            assert all(o.ok for o in outcomes), [o.message for o in outcomes if not o.ok]
            answers = [tuple(map(int, o.message.split())) for o in outcomes]
            sent, started, most = zip(*answers, strict=True)
            assert list(sent) == list(range(30))
            assert list(started) == sorted(started), "a command overtook one sent before it"
            assert max(most) == limit  # reached, never passed
    finally:
        await plugin.stop()
        await bus.disconnect()
