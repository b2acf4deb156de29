"""Per-plugin publish rates, counted by the NATS server itself (``/connz``), not by the plugins."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import nats
import pytest
from nats.aio.client import Client

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig, NatsUser
from bot.rosey.broker.traffic import ConnectionCount, TrafficConfig, TrafficMonitor, read_connz, server_time
from bot.rosey.errors import NatsMonitorError
from bot.rosey.supervision.flood import PluginTraffic

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(20)]

ALLOW = {"publish": {"allow": ["ok.>"]}, "subscribe": {"allow": ["_INBOX.>"]}}


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    users = (
        NatsUser(user="core", password="pw"),
        NatsUser(user="plugin_a", password="pw", permissions=ALLOW),
        NatsUser(user="plugin_b", password="pw", permissions=ALLOW),
    )
    with NatsServer(NatsServerConfig(users=users, monitor=True, jetstream=False)) as running:
        yield running


@pytest.fixture
def clock() -> list[float]:
    return [100.0]  # a clock the test moves: rates are per second of it


async def send(nc: Client, subject: str, count: int) -> None:
    """``count`` messages of 10 bytes; returns once the server has handled them all."""
    for _ in range(count):
        await nc.publish(subject, b"x" * 10)
    await nc.flush()
    await nc.flush()  # the second PONG comes after the server has handled every PUB before it


async def publish(server: NatsServer, user: str, subject: str, count: int, *, close: bool = True) -> Client:
    async def quiet(_: Exception) -> None:
        pass  # denied publishes are expected here

    nc = await nats.connect(server.url, user=user, password="pw", error_cb=quiet, allow_reconnect=False)
    await send(nc, subject, count)
    if close:
        await nc.close()
    return nc


async def test_every_connection_of_a_plugin_counts_closed_and_denied_ones_too(
    server: NatsServer, clock: list[float]
) -> None:
    assert server.monitor_url is not None
    monitor = TrafficMonitor(
        server.monitor_url,
        {"plugin_a": "a", "plugin_b": "b"},
        config=TrafficConfig(interval=0.5, window=1.0),
        clock=lambda: clock[0],
    )
    early = await publish(server, "plugin_a", "ok.before", 7, close=False)
    await monitor.sample()  # the base: what was sent before it is not counted
    assert monitor.counted() == {}

    await send(early, "ok.after", 5)
    kept = await publish(server, "plugin_a", "ok.x", 100, close=False)  # open at the next read
    await publish(server, "plugin_a", "denied.x", 50)  # refused by the server, counted all the same
    await publish(server, "plugin_a", "ok.y", 30)  # opened and closed between two reads
    await publish(server, "plugin_b", "ok.z", 10)
    await publish(server, "core", "ok.core", 1000)  # not a plugin: not counted
    clock[0] += 0.5
    assert await monitor.sample() == {}  # half a window: no rate yet
    assert monitor.counted() == {"a": (185, 1850), "b": (10, 100)}  # payload bytes, as the server counts

    await early.close()  # its last count is read from the closed connections
    await send(kept, "ok.x", 15)
    for n in range(5):  # subscriptions: what it holds now, over all its connections
        await kept.subscribe(f"_INBOX.{n}")
    await kept.flush()
    clock[0] += 0.5
    rates = await monitor.sample()
    assert monitor.counted() == {"a": (200, 2000), "b": (10, 100)}
    assert rates == {
        "a": PluginTraffic(msgs_per_second=200.0, bytes_per_second=2000.0, seconds=1.0, subscriptions=5),
        "b": PluginTraffic(msgs_per_second=10.0, bytes_per_second=100.0, seconds=1.0),
    }
    clock[0] += 0.5
    rates = await monitor.sample()  # the window moved past the first burst
    assert (rates["a"].msgs_per_second, rates["b"].msgs_per_second) == (15.0, 0.0)
    await kept.close()


async def test_an_unreachable_or_wrong_endpoint_is_a_monitor_error(server: NatsServer) -> None:
    assert server.monitor_url is not None
    with pytest.raises(NatsMonitorError, match=r"answered 'HTTP/1\.[01] 404"):
        await read_connz(f"{server.monitor_url}/nosuch")
    with pytest.raises(NatsMonitorError, match="cannot read") as caught:
        await read_connz(server.url.replace("nats://", "http://").rsplit(":", 1)[0] + ":1")
    assert caught.value.url is not None
    with pytest.raises(NatsMonitorError, match="not an http:// monitoring URL"):
        await read_connz(server.url)


@contextlib.asynccontextmanager
async def monitoring_endpoint(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A stand-in for nats-server's monitoring port on loopback, answering with ``answer``; its URL."""
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_large_answer_is_read_to_its_end() -> None:
    """A few thousand connections make an answer of megabytes, which arrives in many reads."""
    connections = [
        {"cid": cid, "authorized_user": f"plugin_{cid}", "in_msgs": cid, "in_bytes": 2 * cid, "pad": "x" * 99}
        for cid in range(4000)
    ]
    body = json.dumps({"total": len(connections), "connections": connections}).encode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    async with monitoring_endpoint(answer) as url:
        page = await read_connz(url)
        counts, total = page.connections, page.total
    assert len(body) > 700_000 and total == 4000
    assert counts[-1] == ConnectionCount(cid=3999, user="plugin_3999", in_msgs=3999, in_bytes=7998)


def test_the_servers_now_is_read_to_the_nanosecond() -> None:
    assert server_time("2026-12-02T22:31:05.123456789Z") == pytest.approx(1796250665.123456789)
    assert server_time("2026-12-02T22:31:05Z") == 1796250665.0
    for odd in (None, 5, "", "yesterday", "2026-12-02T22:31:05+01:00", "2026-13-02T22:31:05Z"):
        assert server_time(odd) is None, odd


async def test_a_late_answer_does_not_inflate_the_rate() -> None:
    """Rates are per second of the server's own clock (its ``now``, when it took the counters),
    not of the moment the request was sent: an answer that arrives late (the bot's loop busy with
    the very load it measures) held counters from later than that moment."""
    readings = iter([(0, "2026-12-02T22:00:00.000000000Z"), (1000, "2026-12-02T22:00:01.000000000Z")])

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if b"state=open" in request:
            msgs, now = next(readings)
            connections = [{"cid": 1, "authorized_user": "plugin_a", "in_msgs": msgs, "in_bytes": msgs}]
        else:
            connections, now = [], "2026-12-02T22:00:00Z"
        body = json.dumps({"now": now, "total": len(connections), "connections": connections}).encode()
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    async with monitoring_endpoint(answer) as url:
        monitor = TrafficMonitor(url, {"plugin_a": "a"}, config=TrafficConfig(interval=0.5, window=1.0))
        await monitor.sample()
        # Asked again at once: a second of the server's clock passed, whatever the local one says.
        rates = await monitor.sample()
    assert rates["a"].msgs_per_second == pytest.approx(1000.0) and rates["a"].seconds == pytest.approx(1.0)
