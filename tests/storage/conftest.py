"""Storage tests: a JetStream-enabled nats-server per module, the service and a plugin's client on it.

The security fixtures (``start_rosey``: the real RoseyApp with real plugins; ``launcher``: both
launchers) are shared with ``tests/security``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.core.event_bus import EventBus
from bot.rosey.plugins.storage_client import StorageClient
from bot.rosey.services.storage import StorageService
from bot.rosey.storage_config import StorageLimits
from tests.security.conftest import launcher, start_rosey  # noqa: F401  (fixtures)

FIXTURES = Path(__file__).parent / "fixtures"
STORAGE_PLUGIN = FIXTURES / "storage_plugin.py"


@pytest.fixture(scope="module")
def js_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(NatsServerConfig(work_dir=tmp_path_factory.mktemp("nats-js"), jetstream=True))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Store:
    service: StorageService
    core: EventBus
    buses: list[EventBus]

    async def client(self, plugin: str) -> StorageClient:
        bus = EventBus(self.core.servers, name=f"plugin-{plugin}")
        await bus.connect()
        self.buses.append(bus)
        return StorageClient(lambda: bus, plugin)


Limits = dict[str, StorageLimits]


@pytest.fixture
async def make_store(js_server: NatsServer) -> AsyncIterator[object]:
    """``await make_store({"p": StorageLimits(...)})`` -> a started :class:`Store`; stopped after."""
    stores: list[Store] = []

    async def make(limits: Limits) -> Store:
        core = EventBus(js_server.url, name="rosey-storage")
        await core.connect()
        service = StorageService(core, limits, server=js_server.url)
        await service.start()
        store = Store(service, core, [])
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.service.stop()
        for bus in [*store.buses, store.core]:
            await bus.disconnect()
