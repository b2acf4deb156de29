"""A supervised stack on the module's real nats-server: supervisor + fast watchdog + router."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from bot.rosey.core.event_bus import EventBus
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.services.router import CommandOutcome, CoreRouter, RouterConfig
from bot.rosey.supervision.restart import SupervisorConfig
from bot.rosey.supervision.spec import Limits, PluginSpec
from bot.rosey.supervision.status import PluginState
from bot.rosey.supervision.supervisor import ManagedPlugin, Supervisor
from bot.rosey.supervision.watchdog import Watchdog, WatchdogConfig

FAULTY = Path(__file__).parent / "fixtures" / "faulty_plugin.py"
ECHO = Path(__file__).resolve().parents[2] / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"

# Fast enough that a blocked plugin is caught in ~1 s instead of ~7 s.
FAST_WATCHDOG = WatchdogConfig(sweep_interval=0.1, ping_interval=0.3, ping_timeout=0.3, missed_pings_limit=3)
# For limit tests: sweeps as fast, pings too slow to matter, so the limit under test acts first.
SWEEP_ONLY = WatchdogConfig(sweep_interval=0.1, ping_interval=10.0, ping_timeout=10.0, missed_pings_limit=3)
FAST_RESTARTS = SupervisorConfig(backoff_initial=0.05, backoff_max=0.5, stable_after=5.0, crash_limit=3)


def faulty(name: str = "faulty", **limits: Any) -> PluginSpec:
    return PluginSpec(name=name, path=FAULTY, limits=Limits(**limits))


def echo() -> PluginSpec:
    return PluginSpec(name="echo", path=ECHO)


@dataclass
class Traffic:
    """Echo commands, one after another, for as long as a fault is under way."""

    router: CoreRouter
    outcomes: list[CommandOutcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            self.outcomes.append(await self.router.execute("echo", [str(n)], timeout=5.0))
            with contextlib.suppress(TimeoutError):  # pace: ~20 commands/s, ends at once on stop
                await asyncio.wait_for(self._stop.wait(), 0.05)

    async def stop(self) -> list[CommandOutcome]:
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.outcomes

    async def assert_all_answered(self) -> None:
        outcomes = await self.stop()
        assert outcomes, "no healthy traffic was sent"
        failed = [o for o in outcomes if not o.ok]
        assert not failed, f"healthy plugin failed {len(failed)}/{len(outcomes)}: {failed[:3]}"


@dataclass
class Stack:
    supervisor: Supervisor
    watchdog: Watchdog
    router: CoreRouter

    async def command(self, plugin: str, *args: str, timeout: float = 30.0) -> CommandOutcome:
        return await self.router.execute(plugin, list(args), timeout=timeout)

    async def back_up(self, name: str, restarts: int = 1, timeout: float = 20.0) -> ManagedPlugin:
        return await self.supervisor.wait_for_state(
            name, lambda p: p.state is PluginState.RUNNING and p.restarts >= restarts, timeout
        )

    def traffic(self) -> Traffic:
        traffic = Traffic(self.router)
        traffic.start()
        return traffic


@pytest.fixture
async def core_bus(nats_url: str) -> AsyncIterator[EventBus]:
    bus = EventBus(nats_url, name="test-core")
    await bus.connect()
    yield bus
    await bus.disconnect()


async def build_stack(
    bus: EventBus,
    nats_url: str,
    state_dir: Path,
    *specs: PluginSpec,
    env: dict[str, dict[str, str]] | None = None,
    watchdog: WatchdogConfig = FAST_WATCHDOG,
) -> Stack:
    def factory(spec: PluginSpec) -> PluginProcess:
        options = ProcessOptions(data_dir=state_dir / spec.name, extra_env=(env or {}).get(spec.name, {}))
        return PluginProcess(spec.name, spec.path, nats_url, options=options)

    supervisor = Supervisor(bus, specs, factory, FAST_RESTARTS)

    router = CoreRouter(
        bus,
        RouterConfig(command_timeout=30.0),
        known_plugins=supervisor.names,
        why_unavailable=supervisor.why_unavailable,  # as the app wires it
    )
    await router.start()
    results = await supervisor.start_all()
    dog = Watchdog(supervisor, bus, watchdog)
    dog.start()
    assert all(error is None for name, error in results.items() if name == "echo"), results
    return Stack(supervisor, dog, router)


async def teardown_stack(stack: Stack) -> None:
    await stack.watchdog.stop()
    await stack.supervisor.stop_all()
    await stack.router.stop()


@pytest.fixture
async def stack_factory(core_bus: EventBus, nats_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    stacks: list[Stack] = []

    async def make(
        *specs: PluginSpec,
        env: dict[str, dict[str, str]] | None = None,
        watchdog: WatchdogConfig = FAST_WATCHDOG,
    ) -> Stack:
        stack = await build_stack(core_bus, nats_url, tmp_path, *specs, env=env, watchdog=watchdog)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await teardown_stack(stack)


def measured_process(pid: int, data_dir: Path) -> PluginProcess:
    """What the disk watch reads of a plugin process: ``pid`` runs the plugin's code (no PID
    namespace: it is also the supervised one), ``data_dir`` is its data directory."""
    return cast(
        PluginProcess, SimpleNamespace(pid=pid, measured_pid=pid, data_dir=data_dir, psutil_process=None)
    )


def disk_target(process: PluginProcess, data_dir: Path, quota_mb: int) -> Any:
    """A supervisor's plugin as the disk guard reads it (and writes back ``disk``): named "w"."""
    spec = PluginSpec(name="w", path=data_dir / "w.py", limits=Limits(max_disk_mb=quota_mb))
    return SimpleNamespace(name="w", process=process, spec=spec, disk=None)
