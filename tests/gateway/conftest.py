"""A loopback HTTP server per test, and gateways built from ``[plugins.NAME.http]``-shaped tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.gateway_config import parse_http_grant
from bot.rosey.services.gateway import HttpGateway
from bot.rosey.services.gateway_addresses import Resolver, resolve
from bot.rosey.services.gateway_audit import AuditLog
from tests.gateway.http_server import LoopbackServer, start_server


@dataclass(frozen=True)
class Secret:
    """A secret source as the gateway sees one (the config's SecretSource has the same read())."""

    value: str

    def read(self) -> str:
        return self.value


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.close()


MakeGateway = Callable[..., Awaitable[HttpGateway]]


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[MakeGateway]:
    """``await make_gateway({"allow": [...]}, secrets={"k": "value"})``: plugin "weather"'s grant.

    The gateway is not started on a bus: tests call ``gateway.handle(plugin, request)``, the
    handler the bus would call, so they see what a plugin would be sent back.
    """
    made: list[HttpGateway] = []

    async def make(
        table: Mapping[str, Any],
        *,
        secrets: Mapping[str, str] | None = None,
        plugin: str = "weather",
        resolver: Resolver = resolve,
    ) -> HttpGateway:
        sources = {name: Secret(value) for name, value in (secrets or {}).items()}
        grant = parse_http_grant(plugin, table, sources)
        assert grant is not None
        gateway = HttpGateway(
            None,  # type: ignore[arg-type]  # never started: no bus needed
            {plugin: grant},
            sources,
            audit=AuditLog(tmp_path / f"audit{len(made)}"),
            resolver=resolver,
        )
        gateway.audit.open()
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        await gateway.stop()


# The real RoseyApp with real plugins, under both launchers (tests/security's fixtures).
from tests.security.conftest import launcher, start_rosey  # noqa: E402, F401
