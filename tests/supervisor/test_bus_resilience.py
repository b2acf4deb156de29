"""NATS restarted under a running stack: supervisor, router and plugins reconnect by themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.core.event_bus import EventBus
from bot.rosey.services.router import OutcomeKind
from bot.rosey.supervision.status import PluginState

from .conftest import build_stack, echo, faulty, teardown_stack

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(NatsServerConfig(work_dir=tmp_path / "nats", jetstream=False))
    server.start()
    yield server
    server.stop()


async def test_commands_work_again_after_a_nats_restart(own_server: NatsServer, tmp_path: Path) -> None:
    bus = EventBus(own_server.url, name="test-core")
    await bus.connect()
    stack = await build_stack(bus, own_server.url, tmp_path, echo(), faulty())
    try:
        assert (await stack.command("echo", "before")).ok
        pids = {name: stack.supervisor.get(name).process.pid for name in ("echo", "faulty")}
        own_server.restart()
        # Each attempt waits for a reply (an event); plugins resubscribe as they reconnect.
        outcome = None
        for _ in range(40):
            outcome = await stack.command("echo", "after", timeout=0.5)
            if outcome.ok:
                break
            assert outcome.kind in (OutcomeKind.TIMEOUT, OutcomeKind.UNAVAILABLE), outcome
        assert outcome is not None and outcome.ok, outcome
        for _ in range(40):
            if (await stack.command("faulty", "ok", timeout=0.5)).ok:
                break
        else:
            pytest.fail("faulty plugin never answered after the restart")
        # Nobody was restarted: the processes rode out the outage.
        for name, pid in pids.items():
            plugin = stack.supervisor.get(name)
            assert plugin.state is PluginState.RUNNING and plugin.process.pid == pid
        assert bus.stats.reconnects >= 1
    finally:
        await teardown_stack(stack)
        await bus.disconnect()
