"""Shared pieces of the sandbox tests: sandboxed plugin processes and a bus to drive them.

Plugins are started with :class:`PluginProcess` and a policy from ``SandboxPolicy.for_plugin``
pointing at the module's nats-server, exactly as the supervisor will. Every process is stopped
after the test, pass or fail.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.broker.nats_server import NatsServer
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import NoResponders
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.plugins.sandbox import SandboxPolicy

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = FIXTURES / "hostile_plugin.py"
ECHO = Path(__file__).resolve().parents[2] / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"

StartPlugin = Callable[..., Awaitable[PluginProcess]]


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[EventBus]:
    async with EventBus(nats_server.url, name="sandbox-test") as connected:
        yield connected


@pytest.fixture
async def start_plugin(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[StartPlugin]:
    """``await start_plugin(name, path, sandbox=True, **policy_options)`` -> a ready PluginProcess."""
    started: list[PluginProcess] = []

    async def start(name: str, path: Path = HOSTILE, *, sandbox: bool = True, **policy: Any) -> PluginProcess:
        data_dir = tmp_path / "data" / name
        assert nats_server.port is not None
        options = ProcessOptions(
            data_dir=data_dir,
            sandbox=SandboxPolicy.for_plugin(
                plugin_file=path, data_dir=data_dir, nats_port=nats_server.port, **policy
            )
            if sandbox
            else None,
        )
        process = PluginProcess(name, path, nats_url=nats_server.url, options=options)
        started.append(process)
        await process.start()
        return process

    yield start
    for process in started:
        await process.stop(timeout=5)


async def attack(bus: EventBus, plugin: str, *args: object) -> dict[str, Any]:
    """Ask ``plugin`` to run one attack and return its report.

    NoResponders is retried at once (it means the command was not delivered): under load the
    server can answer 503 for a sub-millisecond window right after a plugin reported ready,
    with or without the sandbox; an immediate second request has always been delivered.
    """
    for attempt in range(3):
        try:
            reply = await bus.request(
                Subjects.plugin_command(plugin, "execute"),
                {"args": [str(a) for a in args]},
                "sandbox-test",
                correlation_id=uuid.uuid4().hex,
                timeout=5,
            )
        except NoResponders:
            if attempt == 2:
                raise
            continue
        return dict(reply.data)
    raise AssertionError("unreachable")
