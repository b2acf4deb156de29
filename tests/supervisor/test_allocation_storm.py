"""An allocation storm faster than any sweep is stopped by the plugin's own RLIMIT_DATA."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.rosey.core.event_bus import EventBus
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.plugins.sandbox.policy import SandboxPolicy
from bot.rosey.services.router import CoreRouter, OutcomeKind

from .conftest import ECHO, FAULTY

pytestmark = pytest.mark.timeout(60)


async def test_storm_hits_rlimit_data_and_neighbours_keep_answering(nats_url: str, tmp_path: Path) -> None:
    port = urlsplit(nats_url).port
    assert port is not None

    def sandboxed(name: str, path: Path, **limits: int) -> PluginProcess:
        data = tmp_path / name
        policy = SandboxPolicy.for_plugin(plugin_file=path, data_dir=data, nats_port=port, **limits)
        return PluginProcess(name, path, nats_url, options=ProcessOptions(data_dir=data, sandbox=policy))

    storm = sandboxed("faulty", FAULTY, max_data_mb=192)
    echo = sandboxed("echo", ECHO)
    bus = EventBus(nats_url, name="test-core")
    await bus.connect()
    router = CoreRouter(bus)
    await router.start()
    try:
        await storm.start()
        await echo.start()
        outcome = await router.execute("faulty", ["alloc"], timeout=30)
        # The allocation fails inside the plugin (MemoryError -> an error reply) long before
        # the host notices anything; RSS stayed under the cap.
        assert outcome.kind is OutcomeKind.ERROR and "MemoryError" in outcome.message, outcome
        assert storm.is_running()
        assert storm.get_stats()["memory_mb"] < 192
        assert (await router.execute("echo", ["still", "here"])).ok
        assert (await router.execute("faulty", ["ok"])).ok
    finally:
        await router.stop()
        await bus.disconnect()
        await storm.stop()
        await echo.stop()
