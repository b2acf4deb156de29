"""issue 16 (s-inflight): both ends of the replica barrier on a real nats-server, without processes.

The router's verdict (services/replica_barrier.py): a candidate no replica holds is lost only when
every replica number answered in full; one silent or incomplete replica leaves it undecided (the
command timeout, as before). The replica's answer (plugins/barrier.py): it waits until its command
handler took every command read before the barrier, and says so when that does not happen in time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import pytest
import pytest_asyncio

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.hosts.spread import HostBarrierService
from bot.rosey.plugins.barrier import barrier_reply, barrier_subject
from bot.rosey.plugins.ledger import LedgerWriter
from bot.rosey.services.replica_barrier import BarrierScope, BarrierVerdict, ReplicaBarrier

pytestmark = pytest.mark.timeout(30)


@pytest_asyncio.fixture
async def router_bus() -> AsyncIterator[EventBus]:
    async with EventBus(name="barrier-router") as bus:
        yield bus


@pytest_asyncio.fixture
async def replica_bus() -> AsyncIterator[EventBus]:
    async with EventBus(name="barrier-replica") as bus:
        yield bus


@pytest.fixture
def ledger() -> Iterator[LedgerWriter]:
    read, write = os.pipe()
    os.set_blocking(write, False)
    yield LedgerWriter(write)
    os.close(read)
    os.close(write)


async def _replica(bus: EventBus, number: int, data: dict[str, object] | None) -> None:
    """A stand-in replica answering ``data`` (None: never answers)."""

    async def answer(event: Event) -> None:
        if data is not None and event.reply:
            await bus.respond(event, Event(subject=event.reply, data=dict(data), source="stand-in"))

    await bus.subscribe(barrier_subject("worker", number), answer)
    await bus.flush()


@pytest.mark.asyncio
async def test_a_candidate_no_replica_holds_is_lost(router_bus: EventBus, replica_bus: EventBus) -> None:
    await _replica(replica_bus, 1, {"held": ["a"], "complete": True})
    await _replica(replica_bus, 3, {"held": ["c", "not-asked"], "complete": True})
    barrier = ReplicaBarrier(lambda _plugin: router_bus, source="test")
    verdict = await barrier.verdict("worker", 2, ("a", "b", "c"))
    assert verdict == BarrierVerdict(plugin="worker", replica=2, lost=("b",), undecided=(), silent=())


@pytest.mark.asyncio
@pytest.mark.parametrize("answer", [{"held": ["a"], "complete": False}, None, {"held": "a"}])
async def test_a_replica_that_does_not_answer_in_full_decides_nothing(
    router_bus: EventBus, replica_bus: EventBus, answer: dict[str, object] | None
) -> None:
    await _replica(replica_bus, 1, {"held": ["a"], "complete": True})
    await _replica(replica_bus, 2, answer)
    barrier = ReplicaBarrier(lambda _plugin: router_bus, source="test", timeout=0.2)
    verdict = await barrier.verdict("worker", 3, ("a", "b"))
    assert verdict.lost == () and verdict.undecided == ("b",) and verdict.silent == ("replica 2",), verdict


@pytest.mark.asyncio
async def test_the_settle_callback_gets_the_verdict(router_bus: EventBus, replica_bus: EventBus) -> None:
    await _replica(replica_bus, 1, {"held": [], "complete": True})
    barrier = ReplicaBarrier(lambda _plugin: router_bus, source="test")
    verdicts: asyncio.Queue[BarrierVerdict] = asyncio.Queue()
    barrier.after_crash("worker", 2, ["x"], verdicts.put_nowait)
    assert (await asyncio.wait_for(verdicts.get(), 10)).lost == ("x",)
    await barrier.close()


@pytest.mark.asyncio
async def test_the_replica_answers_once_its_handler_took_what_came_before(
    router_bus: EventBus, replica_bus: EventBus, ledger: LedgerWriter
) -> None:
    gate = asyncio.Event()
    took = asyncio.Event()

    async def handler(event: Event) -> None:  # like the SDK: the ledger first, then back-pressure
        ledger.take(event.correlation_id)
        took.set()
        await gate.wait()

    commands = await replica_bus.subscribe("rosey.commands.worker.execute", handler)
    await replica_bus.flush()
    for cid in ("c1", "c2", "c3"):
        await router_bus.publish("rosey.commands.worker.execute", {}, "test", cid)
    await router_bus.flush()
    await asyncio.wait_for(took.wait(), 10)
    await replica_bus.flush()  # the replica's connection has read all three (a PONG follows them)
    # c2 and c3 wait in the subscription's queue behind the held handler: not in the ledger yet.
    stuck = await barrier_reply({"ids": ["c1", "c2", "c3", "c4"]}, ledger, commands, catch_up=0.05)
    assert stuck == {"held": ["c1"], "complete": False, "idempotent": False}
    pending = asyncio.create_task(barrier_reply({"ids": ["c1", "c2", "c3", "c4"]}, ledger, commands))
    gate.set()
    assert await asyncio.wait_for(pending, 10) == {
        "held": ["c1", "c2", "c3"],
        "complete": True,
        "idempotent": False,
    }
    ledger.done("c1")  # answered: still known for a while (its answer may be on its way)
    assert (await barrier_reply({"ids": ["c1", 5]}, ledger, commands))["held"] == ["c1"]


# ---------------------------------------------------------------------- plugins on hosts


def _host_plugins(*numbers: int) -> dict[str, object]:
    """A host supervisor's plugins, as HostBarrierService reads them: key -> something with a spec."""
    keys = {1: "worker", **{n: f"worker#{n}" for n in numbers if n > 1}}
    return {keys[n]: SimpleNamespace(spec=SimpleNamespace(replica=n)) for n in numbers}


@pytest.mark.asyncio
async def test_a_host_answers_for_its_replicas_by_number(router_bus: EventBus, replica_bus: EventBus) -> None:
    """The hub asks host b (not the replica numbers, which may run on several hosts); b asks each of
    its own replicas and answers with what they hold, complete only if all of them answered in full."""
    await _replica(replica_bus, 1, {"held": ["a"], "complete": True})
    await _replica(replica_bus, 2, {"held": ["c"], "complete": True})
    service = HostBarrierService(replica_bus, "b", lambda: _host_plugins(1, 2, 3))  # 3: not running
    await service.start()
    try:
        scope = BarrierScope(here=False, hosts=("b",))
        barrier = ReplicaBarrier(lambda _plugin: router_bus, source="test", scope=lambda _plugin: scope)
        verdict = await barrier.verdict("worker", 3, ("a", "b", "c"))
        assert verdict == BarrierVerdict(plugin="worker", replica=3, lost=("b",), undecided=(), silent=())
        assert not verdict.idempotent
        # Not asked on the hub's server: a stand-in answering there for number 4 is not heard.
        await _replica(router_bus, 4, {"held": ["b"], "complete": True})
        assert (await barrier.verdict("worker", 3, ("a", "b", "c"))).lost == ("b",)
    finally:
        await service.stop()


@pytest.mark.asyncio
async def test_a_host_whose_replica_is_silent_or_a_host_that_does_not_answer_decides_nothing(
    router_bus: EventBus, replica_bus: EventBus
) -> None:
    await _replica(replica_bus, 1, {"held": ["a"], "complete": True})
    await _replica(replica_bus, 2, None)  # hung
    service = HostBarrierService(replica_bus, "b", lambda: _host_plugins(1, 2))
    await service.start()
    try:
        scope = BarrierScope(here=False, hosts=("b",))
        barrier = ReplicaBarrier(lambda _plugin: router_bus, source="test", scope=lambda _plugin: scope)
        verdict = await barrier.verdict("worker", 3, ("a", "b"))
        assert verdict.lost == () and verdict.undecided == ("b",) and verdict.silent == ("host b",), verdict
        # Host c is carried in the scope but nobody serves its barrier: it decides nothing either.
        both = BarrierScope(here=False, hosts=("b", "c"))
        quick = ReplicaBarrier(
            lambda _plugin: router_bus, source="test", host_timeout=0.5, scope=lambda _plugin: both
        )
        await service.stop()
        verdict = await quick.verdict("worker", 3, ("a",))
        assert verdict.lost == () and set(verdict.silent) == {"host b", "host c"}, verdict
    finally:
        await service.stop()


@pytest.mark.asyncio
async def test_a_host_says_its_plugin_is_idempotent_when_its_replicas_do(
    router_bus: EventBus, replica_bus: EventBus, ledger: LedgerWriter
) -> None:
    """For a lost host's commands the hub has no crash event saying whether they may run twice:
    the survivors' answers say it (the SDK's ledger knows the class's ``idempotent = True``)."""
    ledger.idempotent()

    async def answer(event: Event) -> None:
        reply = await barrier_reply(event.data, ledger, None)
        assert event.reply
        await replica_bus.respond(event, Event(subject=event.reply, data=dict(reply), source="stand-in"))

    await replica_bus.subscribe(barrier_subject("worker", 1), answer)
    service = HostBarrierService(replica_bus, "c", lambda: _host_plugins(1))
    await service.start()
    try:
        scope = BarrierScope(here=False, hosts=("c",))
        barrier = ReplicaBarrier(lambda _plugin: router_bus, source="test", scope=lambda _plugin: scope)
        verdict = await barrier.verdict("worker", 0, ("x",))
        assert verdict.lost == ("x",) and verdict.idempotent
    finally:
        await service.stop()
