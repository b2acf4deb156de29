"""EventBus against a real nats-server (the module's, from the autouse fixture, unless a test needs its own).

Nothing here sleeps: every wait is on something that happens (a delivery, a flush round-trip,
a reply), bounded by ``asyncio.wait_for``. Each test uses its own subjects, so tests sharing the
module's server cannot see each other's traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.core.event_bus import (
    EventBus,
    Handler,
    get_event_bus,
    initialize_event_bus,
    shutdown_event_bus,
)
from bot.rosey.core.events import Event, new_id
from bot.rosey.errors import BusNotConnected, NoResponders, RequestTimeout

WAIT = 5.0  # upper bound for anything that should take milliseconds


class Collector:
    """A handler that records events and lets a test wait for the n-th one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._arrived = asyncio.Event()

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    async def wait_for(self, count: int, within: float = WAIT) -> list[Event]:
        async def until() -> None:
            while len(self.events) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(until(), within)
        return self.events

    @property
    def data(self) -> list[dict[str, object]]:
        return [event.data for event in self.events]


def subject(name: str) -> str:
    return f"test.{name}.{new_id()}"


async def settle(*buses: EventBus) -> None:
    """Return once the server has processed everything each bus sent (SUBs above all).

    One ``flush()`` is not enough with nats-py 2.16: ``Client._send_ping`` writes the PING straight
    to the socket while SUB/PUB wait in ``_pending`` for the flusher task, so the PONG can come
    back before the server has seen the SUB (measured: ~10% of cross-connection requests got
    NoResponders). When the first PONG is back the flusher has run, so the second PING follows
    the SUB on the wire.
    """
    for bus in buses:
        await bus.flush()
        await bus.flush()


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    async with EventBus(name="test-bus") as connected:
        yield connected


@pytest.fixture
async def other_bus() -> AsyncIterator[EventBus]:
    """A second connection: what a plugin process would hold."""
    async with EventBus(name="test-other") as connected:
        yield connected


# ---------------------------------------------------------------------------- pub/sub


async def test_publish_subscribe_round_trip(bus: EventBus, other_bus: EventBus) -> None:
    topic = subject("roundtrip")
    inbox = Collector()
    await other_bus.subscribe(topic, inbox)
    await settle(other_bus)  # the subscription is known to the server before we publish

    sent = await bus.publish(topic, {"text": "hello", "n": 1}, source="tester", correlation_id="c-1")
    (received,) = await inbox.wait_for(1)
    assert received == sent  # every field except the transport-only ``reply``
    assert received.subject == topic
    assert received.source == "tester" and received.correlation_id == "c-1"
    assert received.event_type == topic.rsplit(".", 1)[-1]
    assert received.reply is None


async def test_events_are_delivered_in_order(bus: EventBus) -> None:
    topic = subject("order")
    inbox = Collector()
    await bus.subscribe(topic, inbox)
    for n in range(100):
        await bus.publish(topic, {"n": n})
    await inbox.wait_for(100)
    assert inbox.data == [{"n": n} for n in range(100)]


async def test_wildcard_subscription_sees_the_real_subject(bus: EventBus) -> None:
    root = subject("wild")
    inbox = Collector()
    await bus.subscribe(f"{root}.>", inbox)
    await bus.publish(f"{root}.a.b", {})
    (event,) = await inbox.wait_for(1)
    assert event.subject == f"{root}.a.b" and event.event_type == "b"


async def test_queue_group_delivers_each_event_to_one_member(bus: EventBus, other_bus: EventBus) -> None:
    topic = subject("queue")
    group, watcher = Collector(), Collector()
    shares: dict[str, list[int]] = {"first": [], "second": []}

    def member(name: str) -> Handler:
        async def handle(event: Event) -> None:
            shares[name].append(event.data["n"])
            await group(event)

        return handle

    await bus.subscribe(topic, member("first"), queue="workers")
    await other_bus.subscribe(topic, member("second"), queue="workers")
    await bus.subscribe(topic, watcher)  # not in the group: sees everything
    await settle(bus, other_bus)

    count = 60
    async with EventBus(name="test-publisher") as publisher:
        for n in range(count):
            await publisher.publish(topic, {"n": n})
    await watcher.wait_for(count)
    await group.wait_for(count)
    await settle(bus, other_bus)
    # Without the group each member would get every event: as soon as both had received any,
    # `count` deliveries would hold duplicates; and with one member silent, a share is empty.
    assert len(group.events) == count
    assert sorted(shares["first"] + shares["second"]) == list(range(count))
    assert shares["first"] and shares["second"]  # both took a share (P(all to one) = 2**-59)


async def test_unsubscribe_really_stops_delivery(bus: EventBus) -> None:
    topic = subject("unsub")
    leaving, staying = Collector(), Collector()
    leaving_sub = await bus.subscribe(topic, leaving)
    await bus.subscribe(topic, staying)
    await bus.publish(topic, {"n": 1})
    await leaving.wait_for(1)
    await staying.wait_for(1)

    await leaving_sub.unsubscribe()
    assert not leaving_sub.active
    await leaving_sub.unsubscribe()  # a second call is harmless
    await settle(bus)  # the server has processed the UNSUB

    await bus.publish(topic, {"n": 2})
    await staying.wait_for(2)
    await settle(bus)  # round-trips more: a stray delivery would have been handled by now
    assert leaving.data == [{"n": 1}]
    assert staying.data == [{"n": 1}, {"n": 2}]


async def test_disconnect_drains_pending_publishes(bus: EventBus) -> None:
    topic = subject("drain")
    inbox = Collector()
    await bus.subscribe(topic, inbox)
    await settle(bus)
    publisher = EventBus(name="test-drainer")
    await publisher.connect()
    for n in range(20):
        await publisher.publish(topic, {"n": n})
    await publisher.disconnect()  # no flush of our own: disconnect() must not lose them
    await inbox.wait_for(20)
    assert not publisher.is_connected
    await publisher.disconnect()  # safe twice


# ---------------------------------------------------------------------------- request / reply


async def test_request_reply(bus: EventBus, other_bus: EventBus) -> None:
    topic = subject("request")

    async def responder(request: Event) -> None:
        reply = Event(
            subject=request.reply or "",
            data={"echo": request.data["text"]},
            source="responder",
            correlation_id=request.correlation_id,
        )
        await other_bus.respond(request, reply)

    await other_bus.subscribe(topic, responder)
    await settle(other_bus)

    reply = await bus.request(topic, {"text": "ping"}, source="asker", correlation_id="cid-7", timeout=WAIT)
    assert reply.data == {"echo": "ping"}
    assert reply.source == "responder" and reply.correlation_id == "cid-7"


async def test_respond_needs_a_reply_subject(bus: EventBus) -> None:
    plain = Event(subject="test.plain")
    with pytest.raises(ValueError, match="carries no reply subject"):
        await bus.respond(plain, Event(subject="x"))


async def test_request_without_responders_fails_fast(bus: EventBus) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NoResponders, match="nobody is subscribed") as info:
        await bus.request(subject("nobody"), {}, timeout=WAIT)
    assert loop.time() - started < 1.0  # the server says so at once; we do not wait out the timeout
    assert isinstance(info.value, LookupError)


async def test_request_that_is_never_answered_times_out(bus: EventBus) -> None:
    topic = subject("silent")
    listener = Collector()  # receives, never replies
    await bus.subscribe(topic, listener)
    await settle(bus)
    with pytest.raises(RequestTimeout, match=r"no reply on .* within 0\.2s") as info:
        await bus.request(topic, {"q": 1}, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    (request,) = await listener.wait_for(1)  # it was delivered: a timeout, not "no responders"
    assert request.reply


# ---------------------------------------------------------------------------- robustness


async def test_malformed_message_is_counted_and_skipped(bus: EventBus) -> None:
    topic = subject("malformed")
    inbox = Collector()
    await bus.subscribe(topic, inbox)
    await bus.client.publish(topic, b"not json at all")
    await bus.client.publish(topic, b'{"data": [1, 2]}')
    await bus.client.publish(topic, b"\xff\xfe\xfd")
    good = await bus.publish(topic, {"ok": True})
    (received,) = await inbox.wait_for(1)  # same subscription, in order: the bad ones came first
    assert received == good
    assert bus.stats.malformed == 3
    assert bus.stats.handler_errors == 0


async def test_handler_exception_is_counted_and_delivery_continues(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    topic = subject("boom")
    survivors = Collector()

    async def handler(event: Event) -> None:
        if event.data.get("boom"):
            raise RuntimeError("handler exploded")
        await survivors(event)

    await bus.subscribe(topic, handler)
    with caplog.at_level(logging.ERROR, logger="bot.rosey.core.event_bus"):
        await bus.publish(topic, {"boom": True})
        await bus.publish(topic, {"n": 1})
        await bus.publish(topic, {"boom": True})
        await bus.publish(topic, {"n": 2})
        await survivors.wait_for(2)
    assert survivors.data == [{"n": 1}, {"n": 2}]
    assert bus.stats.handler_errors == 2
    assert "handler exploded" in caplog.text


async def test_cancelled_error_in_handler_does_not_end_the_subscription() -> None:
    """A handler awaiting something that was cancelled elsewhere gets CancelledError; the bus only
    catches ``Exception``, and nats-py then ends the subscription's task for good (``active`` stays
    True, no counter moves, and ``disconnect()`` later waits out nats-py's 30 s drain timeout for
    the message stuck in the dead subscription's queue, hence the plain close below)."""
    topic = subject("cancelled")
    survivors = Collector()

    async def handler(event: Event) -> None:
        if event.data.get("cancel"):
            gone = asyncio.get_running_loop().create_future()
            gone.cancel()
            await gone
        await survivors(event)

    bus = EventBus(name="test-cancelled")
    await bus.connect()
    try:
        await bus.subscribe(topic, handler)
        await bus.publish(topic, {"cancel": True})
        await bus.publish(topic, {"n": 1})
        await survivors.wait_for(1, within=1.0)
    finally:
        await bus.client.close()
        await bus.disconnect()


# ---------------------------------------------------------------------------- connection


async def test_connect_to_a_dead_port_fails_quickly() -> None:
    # A bound socket that never listens: connections to it are refused, and no other process
    # can take the port while we hold it (unlike "bind, close, reuse the number").
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        dead = EventBus(f"nats://127.0.0.1:{port}", name="test-dead", connect_timeout=1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(
            BusNotConnected, match=rf"could not connect to NATS at nats://127\.0\.0\.1:{port}"
        ):
            await dead.connect()
        assert loop.time() - started < 3.0
    assert not dead.is_connected
    with pytest.raises(BusNotConnected):
        dead.client  # noqa: B018 - the property is what raises


async def test_using_the_bus_before_connect_or_after_disconnect() -> None:
    idle = EventBus(name="test-idle")
    with pytest.raises(BusNotConnected, match="call connect"):
        await idle.publish("test.x", {})
    with pytest.raises(BusNotConnected):
        await idle.subscribe("test.x", Collector())
    await idle.connect()
    await idle.disconnect()
    with pytest.raises(BusNotConnected):
        await idle.request("test.x", {}, timeout=0.2)


async def test_module_level_bus_uses_nats_url(nats_server: NatsServer) -> None:
    assert os.environ["NATS_URL"] == nats_server.url
    try:
        bus = await initialize_event_bus()
        assert bus.servers == [nats_server.url]
        assert bus.is_connected and bus.name == "rosey-core"
        assert get_event_bus() is bus
        assert await initialize_event_bus() is bus  # idempotent while connected

        topic = subject("global")
        inbox = Collector()
        await bus.subscribe(topic, inbox)
        await bus.publish(topic, {"via": "global"})
        await inbox.wait_for(1)
    finally:
        await shutdown_event_bus()
    assert not bus.is_connected
    with pytest.raises(BusNotConnected, match="initialize_event_bus"):
        get_event_bus()
    await shutdown_event_bus()  # nothing to shut down: no error


async def test_reconnects_after_a_server_restart(tmp_path: Path) -> None:
    server = NatsServer(NatsServerConfig(work_dir=tmp_path, jetstream=False))
    server.start()
    try:
        async with EventBus(server.url, name="test-reconnect") as bus:
            topic = subject("reconnect")
            inbox = Collector()
            await bus.subscribe(topic, inbox)
            await bus.publish(topic, {"phase": "before"})
            await inbox.wait_for(1)
            port = server.port

            server.restart()  # on this thread: the server's PR_SET_PDEATHSIG is tied to the thread
            assert server.port == port and server.is_running()

            async def delivered_again() -> None:
                # Publishes made before the client notices the old socket is gone are lost; the
                # ones made while reconnecting are buffered and sent after the subscription is
                # replayed. Retry until one arrives, each attempt bounded by a delivery wait.
                attempt = 0
                while not any(e.data.get("phase") == "after" for e in inbox.events):
                    attempt += 1
                    await bus.publish(topic, {"phase": "after", "attempt": attempt})
                    with contextlib.suppress(TimeoutError):
                        await inbox.wait_for(len(inbox.events) + 1, within=0.5)

            await asyncio.wait_for(delivered_again(), 10.0)
            assert bus.stats.reconnects >= 1
            assert bus.is_connected

            # The connection is fully usable again: a request/reply round-trip on it.
            async def responder(request: Event) -> None:
                await bus.respond(request, Event(subject=request.reply or "", data={"pong": True}))

            await bus.subscribe(f"{topic}.ping", responder)
            reply = await bus.request(f"{topic}.ping", {}, timeout=WAIT)
            assert reply.data == {"pong": True}
    finally:
        server.stop()
