"""``self.http`` over a real nats-server: the SDK, the gateway service, and the errors between them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.rosey.core.event_bus import EventBus
from bot.rosey.errors import GatewayError, GatewayRateLimited, GatewayRefused
from bot.rosey.gateway_config import parse_http_grant
from bot.rosey.plugins.http_client import HttpClient, HttpResponse
from bot.rosey.services.gateway import HttpGateway
from bot.rosey.services.gateway_audit import AuditLog
from tests.gateway.http_server import LoopbackServer

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def client(nats_url: str, http_server: LoopbackServer, tmp_path: Path) -> AsyncIterator[HttpClient]:
    table = {
        "allow": [{"url": http_server.url("/ok/"), "methods": ["GET", "POST"], "allow_private": True}],
        "requests_per_minute": 5,
        "max_concurrent": 2,
    }
    grant = parse_http_grant("weather", table, {})
    assert grant is not None
    async with EventBus(nats_url, name="gateway") as host, EventBus(nats_url, name="plugin") as plugin:
        gateway = HttpGateway(host, {"weather": grant}, {}, audit=AuditLog(tmp_path))
        await gateway.start()
        try:
            yield HttpClient(lambda: plugin, "weather")
        finally:
            await gateway.stop()


async def test_get_and_post(client: HttpClient, http_server: LoopbackServer) -> None:
    response = await client.get(http_server.url("/ok/echo"), params={"q": "Paris", "n": [1, 2]})
    assert isinstance(response, HttpResponse) and response.ok and response.status == 200
    assert response.json()["query"] == "q=Paris&n=1&n=2"
    assert response.headers["content-type"] == "application/json" == response.headers["Content-Type"]
    assert '"path": "/ok/echo"' in response.text
    response = await client.post(http_server.url("/ok/echo"), json={"a": [1, 2]}, headers={"X-Id": "7"})
    echoed = response.json()
    assert echoed["body"] == '{"a":[1,2]}' and echoed["headers"]["Content-Type"] == "application/json"
    assert echoed["headers"]["X-Id"] == "7"
    response = await client.post(http_server.url("/ok/echo"), data={"k": "v w"})
    assert response.json()["body"] == "k=v+w"


async def test_errors_arrive_with_their_type(client: HttpClient, http_server: LoopbackServer) -> None:
    with pytest.raises(GatewayRefused) as refused:
        await client.request("DELETE", http_server.url("/ok/echo"))
    assert refused.value.check == "method" and refused.value.rule == "plugins.weather.http.allow[0]"  # type: ignore[attr-defined]
    with pytest.raises(GatewayRefused):
        await client.get("https://example.org/")
    for _ in range(5):
        await client.get(http_server.url("/ok/echo"))
    with pytest.raises(GatewayRateLimited) as limited:
        await client.get(http_server.url("/ok/echo"))
    assert limited.value.retry_after > 0  # type: ignore[attr-defined]


async def test_a_request_over_max_payload_is_refused_before_it_is_sent(
    client: HttpClient, http_server: LoopbackServer
) -> None:
    with pytest.raises(GatewayError) as failed:
        await client.post(http_server.url("/ok/echo"), data=b"x" * (2 * 1024 * 1024))
    error = failed.value
    assert error.reason == "request_too_large" and "too large for the bus" in str(error)  # type: ignore[attr-defined]
    assert http_server.seen == []


async def test_a_slow_request_does_not_hold_up_the_next(
    client: HttpClient, http_server: LoopbackServer
) -> None:
    slow = asyncio.create_task(client.get(http_server.url("/ok/slow")))
    await asyncio.wait_for(asyncio.to_thread(http_server.got_request.wait, 10), 10)
    assert (await client.get(http_server.url("/ok/echo"))).ok  # answered while /slow waits
    assert not slow.done()
    http_server.release()
    assert (await asyncio.wait_for(slow, 10)).ok
