"""Every lifecycle change is published on ``rosey.lifecycle.<name>.<state>``, in order, by the core
only; publishing never holds up or breaks the lifecycle, even with the bus down or stuck."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.broker.identities import plugin_permissions
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.services.router import OutcomeKind
from bot.rosey.supervision.lifecycle import LifecycleEvent
from bot.rosey.supervision.spec import PluginSpec
from bot.rosey.supervision.status import PluginState, PluginStatus
from bot.rosey.supervision.supervisor import Supervisor
from bot.rosey.supervision.watchdog import WatchdogConfig

from .conftest import FAST_RESTARTS, FAST_WATCHDOG, faulty

pytestmark = pytest.mark.timeout(60)

S = PluginState


class Observed:
    """Lifecycle events as another NATS client sees them, with a wait on each arrival."""

    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []
        self.subjects: list[str] = []
        self._arrived = asyncio.Event()

    async def handler(self, event: Event) -> None:
        if event.subject.endswith(".stats"):  # the watchdog's, a PluginStatus: not a state change
            return
        self.subjects.append(event.subject)
        self.events.append(LifecycleEvent.from_dict(event.data))
        self._arrived.set()
        self._arrived = asyncio.Event()

    async def until(self, predicate: Callable[[list[LifecycleEvent]], bool], timeout: float = 20.0) -> None:
        async def wait() -> None:
            while not predicate(self.events):
                await self._arrived.wait()

        await asyncio.wait_for(wait(), timeout)

    async def until_state(self, state: PluginState, count: int = 1) -> None:
        await self.until(lambda events: sum(e.state is state for e in events) >= count)

    def changes(self) -> list[tuple[PluginState | None, PluginState]]:
        return [(e.previous, e.state) for e in self.events]


@pytest.fixture
async def observed(nats_url: str) -> AsyncIterator[Observed]:
    bus = EventBus(nats_url, name="test-observer")
    await bus.connect()
    seen = Observed()
    await bus.subscribe(Subjects.lifecycle_events("faulty"), seen.handler)
    await bus.flush()
    yield seen
    await bus.disconnect()


async def test_start_and_stop(stack_factory: Any, observed: Observed) -> None:
    stack = await stack_factory(faulty())
    await observed.until_state(S.RUNNING)
    pid = stack.supervisor.get("faulty").process.pid
    await stack.supervisor.stop("faulty")
    await observed.until_state(S.STOPPED)
    assert observed.changes() == [
        (S.STOPPED, S.STARTING),
        (S.STARTING, S.RUNNING),
        (S.RUNNING, S.STOPPING),
        (S.STOPPING, S.STOPPED),
    ]
    assert observed.subjects == [
        f"rosey.lifecycle.faulty.{state}" for state in ("starting", "running", "stopping", "stopped")
    ]
    starting, running, stopping, stopped = observed.events
    assert (running.pid, running.restarts, running.reason) == (pid, 0, None)
    assert stopping.reason == stopped.reason == "stop requested"
    assert stopped.last_exit == "exited cleanly", stopped  # the SDK drains on SIGTERM and exits 0
    assert starting.timestamp <= running.timestamp <= stopping.timestamp <= stopped.timestamp


async def test_crash_and_restart(stack_factory: Any, observed: Observed) -> None:
    stack = await stack_factory(faulty())
    await observed.until_state(S.RUNNING)
    first_pid = stack.supervisor.get("faulty").process.pid
    outcome = await stack.command("faulty", "exit", timeout=30.0)
    assert outcome.kind is OutcomeKind.CRASHED  # the router heard the crashed event
    await observed.until_state(S.RUNNING, count=2)
    assert observed.changes()[2:] == [
        (S.RUNNING, S.CRASHED),
        (S.CRASHED, S.STARTING),  # the first crash after a stable start: at once, no backoff
        (S.STARTING, S.RUNNING),
    ]
    crashed, _, running = observed.events[2:]
    assert (crashed.reason, crashed.returncode, crashed.pid) == ("exit code 3", 3, first_pid)
    assert crashed.last_exit == "exit code 3"
    assert running.restarts == 1 and running.pid == stack.supervisor.get("faulty").process.pid != first_pid


async def test_crash_loop_ends_in_failed(stack_factory: Any, observed: Observed) -> None:
    await stack_factory(faulty(), env={"faulty": {"FAULT_ON_START": "exit_after_ready"}})
    await observed.until_state(S.FAILED)
    assert observed.changes() == [
        (S.STOPPED, S.STARTING),
        (S.STARTING, S.RUNNING),
        (S.RUNNING, S.CRASHED),
        (S.CRASHED, S.STARTING),
        (S.STARTING, S.RUNNING),
        (S.RUNNING, S.CRASHED),
        (S.CRASHED, S.BACKOFF),
        (S.BACKOFF, S.STARTING),
        (S.STARTING, S.RUNNING),
        (S.RUNNING, S.CRASHED),
        (S.CRASHED, S.FAILED),
    ]
    backoff, failed = observed.events[6], observed.events[-1]
    assert backoff.delay == FAST_RESTARTS.backoff_initial and backoff.reason == "exit code 4"
    assert failed.reason == "crashed 3 times in a row; last: exit code 4"
    assert [e.restarts for e in observed.events if e.state is S.STARTING] == [0, 1, 2]


async def test_a_failed_start_is_a_crash_event(stack_factory: Any, observed: Observed) -> None:
    await stack_factory(faulty(), env={"faulty": {"FAULT_ON_START": "exit"}})
    await observed.until_state(S.FAILED)
    assert observed.changes() == [
        (S.STOPPED, S.STARTING),
        (S.STARTING, S.CRASHED),  # a failed start is a crash
        (S.CRASHED, S.STARTING),
        (S.STARTING, S.CRASHED),
        (S.CRASHED, S.FAILED),  # the same failure twice: no crash loop
    ]
    assert observed.events[-1].reason == (
        "failed to start, twice the same way: exited before it was ready (exit code 4)"
    )


async def test_stats_events_carry_the_status_schema(stack_factory: Any, nats_url: str) -> None:
    stats: asyncio.Queue[PluginStatus] = asyncio.Queue()

    async def on_stats(event: Event) -> None:
        await stats.put(PluginStatus.from_dict(event.data))

    bus = EventBus(nats_url, name="test-stats")
    await bus.connect()
    try:
        await bus.subscribe(Subjects.lifecycle("faulty", "stats"), on_stats)
        await bus.flush()
        fast = WatchdogConfig(
            sweep_interval=0.1,
            ping_interval=FAST_WATCHDOG.ping_interval,
            ping_timeout=FAST_WATCHDOG.ping_timeout,
            publish_every=0.2,
        )
        stack = await stack_factory(faulty(), watchdog=fast)
        status = await asyncio.wait_for(stats.get(), 10)
        assert (status.name, status.state, status.pid) == (
            "faulty",
            S.RUNNING,
            stack.supervisor.get("faulty").process.pid,
        )
        assert status.memory_mb is not None and status.history == ()  # "now": no history on the bus
    finally:
        await bus.disconnect()


# ---------------------------------------------------------------------- the bus cannot hold it up


def supervisor_on(bus: Any, nats_url: str, state_dir: Path) -> Supervisor:
    def factory(spec: PluginSpec) -> PluginProcess:
        return PluginProcess(spec.name, spec.path, nats_url, options=ProcessOptions(data_dir=state_dir))

    return Supervisor(bus, [faulty()], factory, FAST_RESTARTS)


async def exercise(supervisor: Supervisor) -> None:
    """Start, crash (a watchdog-style kill) and restart, stop: the whole lifecycle runs."""
    results = await supervisor.start_all()
    assert results == {"faulty": None}
    supervisor.kill("faulty", "test kill")
    plugin = await supervisor.wait_for_state("faulty", lambda p: p.state is S.RUNNING and p.restarts == 1, 20)
    assert plugin.last_exit == "test kill"
    await supervisor.stop_all()
    assert plugin.state is S.STOPPED


async def test_lifecycle_runs_with_the_bus_disconnected(nats_url: str, tmp_path: Path) -> None:
    never_connected = EventBus(nats_url, name="test-down")  # publish raises BusNotConnected
    await exercise(supervisor_on(never_connected, nats_url, tmp_path))


class StuckBus:
    """A bus whose publish never returns."""

    def __init__(self) -> None:
        self.attempts = 0

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        self.attempts += 1
        await asyncio.Event().wait()


async def test_lifecycle_never_waits_for_a_stuck_bus(nats_url: str, tmp_path: Path) -> None:
    bus = StuckBus()
    supervisor = supervisor_on(bus, nats_url, tmp_path)
    await exercise(supervisor)  # stop_all gives up on the stuck events after a bounded wait
    assert bus.attempts == 1  # one publish in flight, the rest queued behind it and dropped


# ---------------------------------------------------------------------- only the core may send them


def nats_match(pattern: str, subject: str) -> bool:
    """Whether NATS subject ``pattern`` (with ``*`` and ``>``) covers ``subject``."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(wanted) == len(tokens)


@pytest.mark.parametrize("state", [*PluginState, "stats"])
def test_no_plugin_may_publish_lifecycle_events(state: str) -> None:
    grants = plugin_permissions("faulty")["publish"]["allow"]
    assert nats_match(Subjects.all_plugin_events("faulty"), "rosey.plugins.faulty.started")  # sanity
    for plugin in ("faulty", "echo"):
        subject = Subjects.lifecycle(plugin, state)
        assert not any(nats_match(grant, subject) for grant in grants), (subject, grants)
