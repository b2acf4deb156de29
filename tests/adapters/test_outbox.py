"""The adapter outbox: paced, bounded, and holding messages across a disconnect."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from bot.rosey.adapters.outbox import DeliveryFailed, Outbox, Pacer
from bot.rosey.core.chat import OutgoingMessage

pytestmark = pytest.mark.no_nats


def _message(n: int) -> OutgoingMessage:
    return OutgoingMessage(text=f"m{n}", channel="#c")


@contextlib.asynccontextmanager
async def _running(outbox: Outbox):
    task = asyncio.create_task(outbox.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_pacer_allows_a_burst_then_the_rate() -> None:
    pacer = Pacer(rate=10.0, burst=3)
    assert [pacer.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert 0.05 < pacer.delay() <= 0.1


async def test_messages_wait_for_the_connection_and_keep_their_order() -> None:
    delivered: list[str] = []
    all_in = asyncio.Event()

    async def deliver(message: OutgoingMessage) -> None:
        delivered.append(message.text)
        if len(delivered) == 50:
            all_in.set()

    outbox = Outbox(deliver, rate=1000.0, burst=1000)
    async with _running(outbox):
        for n in range(50):
            outbox.put(_message(n))
        await asyncio.sleep(0)  # the loop runs; nothing may go while disconnected
        assert delivered == []
        outbox.connected.set()
        await asyncio.wait_for(all_in.wait(), 5)
    assert delivered == [f"m{n}" for n in range(50)]
    assert outbox.stats.sent == 50 and outbox.stats.dropped == 0


async def test_a_full_queue_drops_the_oldest_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    delivered: list[str] = []
    done = asyncio.Event()

    async def deliver(message: OutgoingMessage) -> None:
        delivered.append(message.text)
        if message.text == "m9":
            done.set()

    outbox = Outbox(deliver, rate=1000.0, burst=1000, max_queued=3, name="irc")
    async with _running(outbox):
        for n in range(10):
            outbox.put(_message(n))
        outbox.connected.set()
        await asyncio.wait_for(done.wait(), 5)
    assert delivered == ["m7", "m8", "m9"]
    assert outbox.stats.dropped == 7
    assert "irc: dropped 7 outgoing message(s)" in caplog.text


async def test_a_failed_delivery_is_tried_again_and_waits_for_a_reconnect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bot.rosey.adapters.outbox.RETRY_DELAY", 0.01)
    attempts: list[str] = []
    done = asyncio.Event()
    failed = asyncio.Event()

    async def deliver(message: OutgoingMessage) -> None:
        attempts.append(message.text)
        if len(attempts) == 1:
            failed.set()
            raise ConnectionResetError("gone")
        done.set()

    outbox = Outbox(deliver, rate=1000.0, burst=1000)
    async with _running(outbox):
        outbox.put(_message(1))
        outbox.connected.set()
        await asyncio.wait_for(failed.wait(), 5)
        outbox.connected.clear()  # the adapter's session ended meanwhile: the retry waits for it
        with pytest.raises(TimeoutError):  # ten retry delays: nothing is sent while away
            await asyncio.wait_for(asyncio.shield(done.wait()), 0.1)
        assert attempts == ["m1"]
        outbox.connected.set()  # the adapter reconnected
        await asyncio.wait_for(done.wait(), 5)
    assert attempts == ["m1", "m1"] and outbox.stats.sent == 1


async def test_a_message_the_platform_refuses_is_dropped_and_the_rest_go_on() -> None:
    delivered: list[str] = []
    done = asyncio.Event()

    async def deliver(message: OutgoingMessage) -> None:
        if message.text == "m1":
            raise DeliveryFailed("no such channel")
        delivered.append(message.text)
        done.set()

    outbox = Outbox(deliver, rate=1000.0, burst=1000)
    async with _running(outbox):
        outbox.put(_message(1))
        outbox.put(_message(2))
        outbox.connected.set()
        await asyncio.wait_for(done.wait(), 5)
    assert delivered == ["m2"] and outbox.stats.dropped == 1


async def test_the_pace_holds_under_a_burst() -> None:
    stamps: list[float] = []
    done = asyncio.Event()

    async def deliver(message: OutgoingMessage) -> None:
        stamps.append(time.monotonic())
        if len(stamps) == 8:
            done.set()

    outbox = Outbox(deliver, rate=50.0, burst=3)
    async with _running(outbox):
        outbox.connected.set()
        for n in range(8):
            outbox.put(_message(n))
        await asyncio.wait_for(done.wait(), 5)
    # 3 at once, then 5 at 50/s: at least 5 * 20 ms from the first to the last (a floor, not a timing).
    assert stamps[-1] - stamps[0] >= 5 / 50 * 0.9
