"""The one service pattern (``services/base.py``) against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from bot.rosey.adapters import Adapter, ConsoleAdapter
from bot.rosey.broker.nats_server import NatsServer
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import new_id
from bot.rosey.errors import PluginNotFound
from bot.rosey.services.base import RequestService

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[EventBus]:
    bus = EventBus(nats_server.url, name="test-services")
    await bus.connect()
    yield bus
    await bus.disconnect()


async def test_each_request_gets_one_reply_ok_or_one_line_error(bus: EventBus) -> None:
    base = f"test.service.{new_id()}"

    async def echo(data: Mapping[str, Any]) -> dict[str, Any]:
        return {"said": data["text"]}

    async def refuse(data: Mapping[str, Any]) -> dict[str, Any]:
        raise PluginNotFound("no plugin named 'nope'")

    service = RequestService(bus, {f"{base}.echo": echo, f"{base}.refuse": refuse}, source="test")
    await service.start()
    try:
        ok = await bus.request(f"{base}.echo", {"text": "hi"}, "test", timeout=5.0)
        assert ok.data == {"ok": True, "said": "hi"}
        assert ok.source == "test"
        refused = await bus.request(f"{base}.refuse", {}, "test", timeout=5.0)
        assert refused.data == {"ok": False, "error": "no plugin named 'nope'"}
        malformed = await bus.request(f"{base}.echo", {}, "test", timeout=5.0)  # no "text"
        assert malformed.data["ok"] is False and malformed.data["error"].startswith("bad request: ")
        # A bad request never breaks the subscription: the next one is served.
        again = await bus.request(f"{base}.echo", {"text": "again"}, "test", timeout=5.0)
        assert again.data == {"ok": True, "said": "again"}
    finally:
        await service.stop()


async def test_a_stopped_service_no_longer_answers(bus: EventBus) -> None:
    subject = f"test.service.{new_id()}.ping"

    async def pong(_: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    service = RequestService(bus, {subject: pong}, source="test")
    await service.start()
    assert (await bus.request(subject, {}, "test", timeout=5.0)).data == {"ok": True}
    await service.stop()
    with pytest.raises(LookupError):  # NoResponders: nobody serves the subject any more
        await asyncio.wait_for(bus.request(subject, {}, "test", timeout=5.0), 10)


def test_the_console_adapter_is_an_adapter(bus: EventBus) -> None:
    assert isinstance(ConsoleAdapter(bus), Adapter)
    assert ConsoleAdapter.platform == "console"
