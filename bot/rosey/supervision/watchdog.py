"""The watchdog beside the supervisor: resource sweeps, enforced limits, liveness pings.

A sweep reads each plugin's CPU, RSS, threads and fds through psutil without blocking
(``cpu_percent(None)`` compares with the previous sweep; ~65 µs per process here), keeps a
short history, and kills a plugin that crosses a limit with the reason in words. Liveness is
a NATS ping answered by the plugin's own event loop: a loop blocked by plugin code stops
answering and the plugin is killed and restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass

import psutil

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import BusNotConnected, NoResponders, RequestTimeout
from bot.rosey.plugins.contract import PingReply
from bot.rosey.supervision.disk import DiskWatch
from bot.rosey.supervision.loop_lag import LoopLag
from bot.rosey.supervision.spec import Limits
from bot.rosey.supervision.status import PluginState, ResourceSample
from bot.rosey.supervision.supervisor import ManagedPlugin, Supervisor

__all__ = ["Watchdog", "WatchdogConfig", "add_cpu_reading", "limit_violation"]

logger = logging.getLogger(__name__)

SWEEP_CHUNK = 10  # plugins per event-loop step during a sweep


@dataclass(frozen=True, kw_only=True)
class WatchdogConfig:
    sweep_interval: float = 1.0
    # 3 missed pings at (1.5 + 1.0) s each: a blocked plugin is killed after ~7.5 s.
    ping_interval: float = 1.5
    ping_timeout: float = 1.0
    missed_pings_limit: int = 3
    publish_every: float = 5.0  # stats events on rosey.lifecycle.<name>.stats
    # Disk quotas: a pass reads each plugin's write counter (~2 µs); a data dir is walked only
    # when due (see supervision/disk.py). Between passes a plugin can write what the page cache
    # takes in this time (~150 MB at 1.5 GB/s): the bound on how far past its quota it gets.
    disk_interval: float = 0.1

    def __post_init__(self) -> None:
        intervals = (self.sweep_interval, self.ping_interval, self.ping_timeout, self.publish_every)
        if min(*intervals, self.disk_interval) <= 0:
            raise ValueError("watchdog intervals must be positive")
        if self.missed_pings_limit < 1:
            raise ValueError("missed_pings_limit must be >= 1")


def limit_violation(
    limits: Limits,
    sample: ResourceSample,
    cpu_samples: deque[tuple[float, float]],
    children: int | None,
) -> str | None:
    """The first limit ``sample`` breaks, in words ("memory 301 MB > limit 256 MB"), or None.

    ``cpu_samples`` are the (monotonic time, CPU %) readings of the plugin's current process,
    reaching back to the newest one at least ``cpu_window_seconds`` old: the CPU limit is broken
    when every reading is above it over a span of the whole window. ``children`` is the plugin's
    process count below it, None when not counted.
    """
    max_memory = limits.max_memory_mb
    if max_memory and sample.memory_mb > max_memory:
        return f"memory {sample.memory_mb:.0f} MB > limit {max_memory} MB"
    max_threads = limits.max_threads
    if max_threads and (sample.num_threads or 0) > max_threads:
        return f"threads {sample.num_threads} > limit {max_threads}"
    max_fds = limits.max_open_files
    if max_fds and (sample.num_fds or 0) > max_fds:
        return f"open files {sample.num_fds} > limit {max_fds}"
    max_processes = limits.max_processes
    if max_processes is not None and children is not None and children > max_processes:
        return f"child processes {children} > limit {max_processes}"
    max_cpu = limits.max_cpu_percent
    window = limits.cpu_window_seconds
    if max_cpu and len(cpu_samples) >= 2:
        span = cpu_samples[-1][0] - cpu_samples[0][0]
        if span >= window and all(cpu > max_cpu for _, cpu in cpu_samples):
            average = sum(cpu for _, cpu in cpu_samples) / len(cpu_samples)
            return f"cpu {average:.0f}% > limit {max_cpu:g}% for {span:.0f} s"
    return None


def add_cpu_reading(samples: deque[tuple[float, float]], now: float, cpu: float, window: float) -> None:
    """Append a reading; drop those older than needed to span ``window`` (see :func:`limit_violation`).

    The newest reading at or past the window's start is kept. Readings come one sweep interval
    plus the sweep's own time apart (1.0x s): dropping every reading older than the window left
    floor(window / interval) intervals, 4.0x s of a 5 s window, and that window never counted
    as covered.
    """
    samples.append((now, cpu))
    while len(samples) >= 2 and now - samples[1][0] >= window:
        samples.popleft()


class Watchdog:
    """Runs the sweep and ping loops for one supervisor until cancelled."""

    def __init__(
        self, supervisor: Supervisor, bus: EventBus | None, config: WatchdogConfig | None = None
    ) -> None:
        self.supervisor = supervisor
        self.bus = bus
        self.config = config or WatchdogConfig()
        self.last_sweep_seconds = 0.0
        self._cpu: dict[str, tuple[int, deque[tuple[float, float]]]] = {}  # name -> (pid, readings)
        self._missed: dict[tuple[str, int], int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_publish = 0.0
        self.disk = DiskWatch()
        self.loop_lag = LoopLag()
        self.excused_pings = 0  # timeouts not counted as misses: the core's loop was too late

    def start(self) -> None:
        self.loop_lag.start()
        self._tasks = [
            asyncio.create_task(self._sweep_loop(), name="rosey-watchdog-sweep"),
            asyncio.create_task(self._disk_loop(), name="rosey-watchdog-disk"),
        ]
        if self.bus is not None:
            self._tasks.append(asyncio.create_task(self._ping_loop(), name="rosey-watchdog-ping"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.loop_lag.stop()

    # ------------------------------------------------------------------ sweep

    def sweep(self) -> None:
        """One pass over running plugins: record stats, enforce limits. Never blocks on I/O."""
        started = time.perf_counter()
        now = time.monotonic()
        for plugin in self.supervisor.running():
            self._sweep_one(plugin, now)
        self.last_sweep_seconds = time.perf_counter() - started

    async def sweep_cooperatively(self) -> None:
        """The same pass, yielding to the event loop every ``SWEEP_CHUNK`` plugins.

        A sweep over 100 plugins costs ~7 ms of psutil reads; done in one go, it delays every
        other callback (a command's reply included) by that much. In chunks the loop never
        waits for more than one chunk (~0.7 ms).
        """
        busy = 0.0
        now = time.monotonic()
        plugins = self.supervisor.running()
        for index in range(0, len(plugins), SWEEP_CHUNK):
            started = time.perf_counter()
            for plugin in plugins[index : index + SWEEP_CHUNK]:
                self._sweep_one(plugin, now)
            busy += time.perf_counter() - started
            await asyncio.sleep(0)
        self.last_sweep_seconds = busy

    def _sweep_one(self, plugin: ManagedPlugin, now: float) -> None:
        if plugin.state is not PluginState.RUNNING or plugin.process is None:
            return
        stats = plugin.process.get_stats()
        if not stats.get("running"):
            return
        sample = ResourceSample.from_stats(stats, t=time.time())
        plugin.stats = sample
        plugin.history.append(sample)
        pid = plugin.process.pid or 0
        entry = self._cpu.get(plugin.name)
        if entry is None or entry[0] != pid:  # a new process is judged on its own readings only
            entry = self._cpu[plugin.name] = (pid, deque())
        samples = entry[1]
        add_cpu_reading(samples, now, sample.cpu_percent, plugin.spec.limits.cpu_window_seconds)
        reason = limit_violation(plugin.spec.limits, sample, samples, self._children(plugin))
        if reason is not None:
            samples.clear()
            self.supervisor.kill(plugin.name, reason)

    def _children(self, plugin: ManagedPlugin) -> int | None:
        # Scanning /proc for children costs ~1 ms; only pay it for plugins allowed to fork,
        # the others cannot create processes at all (seccomp).
        if not plugin.spec.limits.max_processes or plugin.process is None:
            return None
        if plugin.process.psutil_process is None:
            return None
        with contextlib.suppress(psutil.Error):
            return len(plugin.process.descendants())
        return None

    async def _sweep_loop(self) -> None:
        while True:
            await self.sweep_cooperatively()
            if self.bus is not None and time.monotonic() - self._last_publish >= self.config.publish_every:
                self._last_publish = time.monotonic()
                await self._publish_stats()
            await asyncio.sleep(self.config.sweep_interval)

    async def _publish_stats(self) -> None:
        if self.bus is None:
            return
        for index, plugin in enumerate(self.supervisor.running()):
            # Without history: the event says "now"; ``rosey status`` has the recent past.
            data = plugin.status(history=0).to_dict()
            with contextlib.suppress(BusNotConnected, OSError):
                await self.bus.publish(
                    Subjects.lifecycle(plugin.name, "stats"), data, source="rosey-supervisor"
                )
            if index % SWEEP_CHUNK == SWEEP_CHUNK - 1:
                await asyncio.sleep(0)  # as for sweeps: never hold the loop for all plugins at once

    # ------------------------------------------------------------------ disk quotas

    async def _disk_loop(self) -> None:
        while True:
            await self.check_disk()
            await asyncio.sleep(self.config.disk_interval)

    async def check_disk(self) -> None:
        """One pass over the plugins with a disk quota: kill those over it, with the reason.

        Starting plugins are checked too: a plugin may write from ``on_start``, before it is ready.
        A pass reads one counter per plugin (~2 µs) and walks a data dir only when it is due.
        """
        checked = []
        for plugin in self.supervisor.running():
            limit = plugin.spec.limits.max_disk_mb
            process = plugin.process
            active = plugin.state in (PluginState.STARTING, PluginState.RUNNING)
            if not limit or process is None or not active:
                continue
            checked.append(plugin.name)
            pid = process.pid
            forks = bool(plugin.spec.limits.max_processes)
            reason = await self.disk.check(plugin.name, process, limit, children=forks)
            plugin.disk = self.disk.usage(plugin.name)
            # The walk yields to the loop: act only on the process that was measured.
            if reason is not None and process.is_running() and process.pid == pid:
                self.supervisor.kill(plugin.name, reason)
        self.disk.retain(checked)

    # ------------------------------------------------------------------ liveness

    async def _ping_loop(self) -> None:
        while True:
            targets = [p for p in self.supervisor.running() if p.state is PluginState.RUNNING]
            await asyncio.gather(*(self._ping(p) for p in targets))
            await asyncio.sleep(self.config.ping_interval)

    async def _ping(self, plugin: ManagedPlugin) -> None:
        assert self.bus is not None
        pid = plugin.process.pid if plugin.process else None
        if pid is None:
            return
        key = (plugin.name, pid)
        started = time.monotonic()
        try:
            reply = await self.bus.request(
                Subjects.control(plugin.name, "ping"),
                {},
                "rosey-supervisor",
                timeout=self.config.ping_timeout,
            )
        except (RequestTimeout, NoResponders) as exc:
            if isinstance(exc, RequestTimeout) and self._core_was_late(plugin.name, started):
                return
            missed = self._missed.get(key, 0) + 1
            self._missed[key] = missed
            if missed >= self.config.missed_pings_limit:
                self._missed.pop(key, None)
                span = missed * (self.config.ping_interval + self.config.ping_timeout)
                self.supervisor.kill(
                    plugin.name, f"unresponsive: missed {missed} liveness pings (~{span:.0f} s)"
                )
            return
        except BusNotConnected:
            return  # the bus is down: that is not the plugin's fault
        self._missed.pop(key, None)
        plugin.ping = PingReply.from_wire(reply.data)  # untrusted: read defensively

    def _core_was_late(self, name: str, since: float) -> bool:
        """A timeout is the plugin's fault only if the core's loop gave it at least half the time."""
        late = self.loop_lag.lag_since(since)
        if late < self.config.ping_timeout / 2:
            return False
        self.excused_pings += 1
        logger.info("ping to '%s' not counted as missed: the core's loop ran %.0f ms late", name, late * 1000)
        return True
