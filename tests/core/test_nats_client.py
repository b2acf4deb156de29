"""FastClient (issue 17): nats-py with a message taken in the read loop and a reply written at once.

Against the module's real nats-server. What is checked is what the shortcuts must keep: every
message delivered once and in order, the stock path taking over whenever the shortcut cannot
(a declined message, a slow socket), and the nats-py internals it relies on still being there.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import nats.protocol.parser
import pytest
from nats.aio.client import Client

from bot.rosey.core import nats_client
from bot.rosey.core.event_bus import FASTPATH_ENV, EventBus
from bot.rosey.core.events import Event, new_id
from bot.rosey.core.nats_client import FastClient

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0


@pytest.fixture(autouse=True)
def _fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FASTPATH_ENV, "1")  # opt-in (see EventBus.connect)


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    async with EventBus(name="test-fast") as connected:
        yield connected


@pytest.fixture
async def other_bus() -> AsyncIterator[EventBus]:
    async with EventBus(name="test-fast-other") as connected:
        yield connected


def _subject(name: str) -> str:
    return f"test.fast.{name}.{new_id()}"


@pytest.mark.no_nats
async def test_the_nats_py_internals_it_relies_on_are_there() -> None:
    """An upgrade of nats-py that moves any of these fails here, not in production."""
    assert list(inspect.signature(Client._process_msg).parameters) == [
        "self",
        "sid",
        "subject",
        "reply",
        "data",
        "headers",
    ]
    assert "force_flush" in inspect.signature(Client._flush_pending).parameters
    assert "self.nc._process_msg(" in inspect.getsource(nats.protocol.parser.Parser.parse)
    client = Client()
    for name in ("_pending", "_pending_data_size", "_subs", "_transport", "_flusher_task", "_flush_queue"):
        assert hasattr(client, name), name
    queue: asyncio.Queue[int] = asyncio.Queue()
    assert queue._unfinished_tasks == 0  # type: ignore[attr-defined]
    assert hasattr(asyncio.get_running_loop(), "_ready")


async def test_the_bus_uses_it_when_switched_on(monkeypatch: pytest.MonkeyPatch) -> None:
    async with EventBus(name="test-on") as bus:
        assert type(bus.client) is FastClient
    monkeypatch.delenv(FASTPATH_ENV)
    async with EventBus(name="test-default") as bus:
        assert type(bus.client) is Client


async def test_a_reply_resolves_its_request_in_the_read_loop(bus: EventBus, other_bus: EventBus) -> None:
    topic = _subject("reply")

    async def answer(event: Event) -> None:
        await other_bus.respond(event, Event(subject="x", data={"echo": event.data["n"]}))

    await other_bus.subscribe(topic, answer)
    await other_bus.flush()

    async def not_here(_msg: object) -> None:  # the subscription task's path
        raise AssertionError("the reply went through the subscription's task")

    bus._on_reply = not_here  # type: ignore[method-assign]
    replies = await asyncio.gather(*(bus.request(topic, {"n": i}, timeout=WAIT) for i in range(20)))
    assert [r.data["echo"] for r in replies] == list(range(20))


async def test_order_is_kept_when_the_inline_taker_declines(bus: EventBus, other_bus: EventBus) -> None:
    """A declined message waits in nats-py's queue; every later one waits behind it, even those
    the inline taker would have taken."""
    topic = _subject("order")
    seen: list[tuple[str, int]] = []
    gate = asyncio.Event()
    all_seen = asyncio.Event()

    def record(how: str, event: Event) -> None:
        seen.append((how, event.data["n"]))
        if len(seen) == 20:
            all_seen.set()

    def inline(event: Event) -> bool:
        if event.data["n"] == 3:
            return False  # e.g. no free slot
        record("inline", event)
        return True

    async def handler(event: Event) -> None:
        if event.data["n"] == 3:
            await gate.wait()  # holds the queue like a command waiting for a slot
        record("queued", event)

    await other_bus.subscribe(topic, handler, inline=inline)
    await other_bus.flush()
    for n in range(20):
        await bus.publish(topic, {"n": n})
    await bus.flush()
    await other_bus.flush()  # everything sent has arrived by now
    assert [n for _, n in seen] == [0, 1, 2]
    gate.set()
    await asyncio.wait_for(all_seen.wait(), WAIT)
    assert [n for _, n in seen] == list(range(20))
    assert {how for how, n in seen if n >= 3} == {"queued"}
    # Once the queue is empty again, the read loop takes them.
    for n in range(20, 23):
        await bus.publish(topic, {"n": n})
    await bus.flush()
    await other_bus.flush()
    assert seen[-3:] == [("inline", 20), ("inline", 21), ("inline", 22)]


async def test_an_answer_on_two_subjects_is_one_socket_write(bus: EventBus, other_bus: EventBus) -> None:
    first, second = _subject("a"), _subject("b")
    got: list[str] = []
    both = asyncio.Event()

    async def collect(event: Event) -> None:
        got.append(event.subject)
        if len(got) == 2:
            both.set()

    await other_bus.subscribe(first, collect)
    await other_bus.subscribe(second, collect)
    await other_bus.flush()
    client = bus.client
    assert isinstance(client, FastClient) and client._transport is not None
    writes: list[int] = []
    transport = client._transport
    original = transport.writelines

    def counting(lines: list[bytes]) -> None:
        writes.append(len(lines))
        original(lines)

    transport.writelines = counting  # type: ignore[method-assign]
    try:
        await bus.publish_event_to(Event(subject=first, data={"x": 1}), (first, second))
        await asyncio.wait_for(both.wait(), WAIT)
    finally:
        transport.writelines = original  # type: ignore[method-assign]
    assert sorted(got) == sorted([first, second])
    assert writes[0] == 2  # both PUBs in the first write


async def test_a_slow_socket_goes_through_the_nats_py_flusher(
    bus: EventBus, other_bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the buffer limit the flusher writes (it waits for the socket to drain): nothing lost."""
    topic = _subject("slow")
    monkeypatch.setattr(nats_client, "_WRITE_BUFFER_LIMIT", -1)
    client = bus.client
    assert isinstance(client, FastClient)
    assert not client._writable()

    async def answer(event: Event) -> None:
        await other_bus.respond(event, Event(subject="x", data={"n": event.data["n"]}))

    await other_bus.subscribe(topic, answer)
    await other_bus.flush()
    replies = await asyncio.gather(*(bus.request(topic, {"n": i}, timeout=WAIT) for i in range(50)))
    assert [r.data["n"] for r in replies] == list(range(50))
