"""The watchdog beside the supervisor: resource sweeps, enforced limits, liveness pings.

A sweep reads each plugin's CPU, RSS, threads and fds straight from ``/proc`` (one ``pread`` of
its kept ``stat`` file and one ``listdir`` of its ``fd`` directory, ~15 µs per process; see
:mod:`~bot.rosey.supervision.proc_stats`), keeps a short history, and kills a plugin that crosses
a limit with the reason in words. Liveness is a NATS ping answered by the plugin's own event
loop: a loop blocked by plugin code stops answering and the plugin is killed and restarted.

None of it may hold the bot's event loop for long: with 100 plugins the work of one interval is
cut in chunks (``SWEEP_CHUNK`` plugins) *spread over the interval*, not run back to back, so the
loop is never held for more than one chunk (~0.3 ms), and a command's reply never waits behind a
whole sweep. Disk quotas are checked on a thread of their own (:class:`.disk.DiskGuard`): their
bound is a time (what a plugin can write between two checks), which must not stretch when the
loop is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import BusNotConnected, MalformedEvent
from bot.rosey.plugins.contract import PingReply
from bot.rosey.plugins.plugin_runner import PluginProcess
from bot.rosey.supervision.disk import DiskGuard, DiskWatch
from bot.rosey.supervision.loop_lag import LoopLag
from bot.rosey.supervision.proc_stats import ProcStat
from bot.rosey.supervision.spec import Limits
from bot.rosey.supervision.status import PluginState, ResourceSample
from bot.rosey.supervision.supervisor import ManagedPlugin, Supervisor

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = ["Watchdog", "WatchdogConfig", "add_cpu_reading", "limit_violation"]

logger = logging.getLogger(__name__)

SWEEP_CHUNK = 10  # plugins per event-loop step during a sweep, a ping round or a stats round
#: Share of an interval its chunks are spread over (the rest is slack for a late loop).
SPREAD = 0.8
#: A plugin's open descriptors are counted every this many sweeps (a ``listdir`` of its
#: ``/proc/PID/fd``, half a reading's cost or more), and every sweep when it has an open-files
#: limit that the kernel does not enforce (no sandbox rlimits): where the sandbox applied its
#: RLIMIT_NOFILE the count cannot pass the limit, it is only shown in ``rosey status``.
FD_COUNT_EVERY = 5

_T = TypeVar("_T")
_NO_RESPONDERS = "503"  # the status nats-server sends back to a request nobody is subscribed to


@dataclass(kw_only=True)
class _Ping:
    """One liveness ping under way: to whom, when, and what came back."""

    plugin: ManagedPlugin
    pid: int
    token: str
    sent: float
    answered: float | None = None
    no_responders: bool = False


@dataclass(frozen=True, kw_only=True)
class WatchdogConfig:
    sweep_interval: float = 1.0
    # 3 missed pings at (1.5 + 1.0) s each: a blocked plugin is killed after ~7.5 s.
    ping_interval: float = 1.5
    ping_timeout: float = 1.0
    missed_pings_limit: int = 3
    publish_every: float = 5.0  # stats events on rosey.lifecycle.<name>.stats
    # Disk quotas: a full pass reads each plugin's write counter (~2 µs) that is due, and finds
    # new processes; in between, plugins near their quota are read as often as their headroom
    # needs (down to every 10 ms, see supervision/disk.py). A data dir is walked only when due.
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
        self.disk = DiskWatch()
        self._guard: DiskGuard | None = None
        supervisor.add_launch_listener(self._launched)
        self._procs: dict[str, ProcStat] = {}  # name -> its current process's /proc files
        self.loop_lag = LoopLag()
        self.excused_pings = 0  # timeouts not counted as misses: the core's loop was too late
        self._pings: dict[str, _Ping] = {}  # token -> ping under way (s-thousand)
        self._ping_seq = 0
        self._reply_prefix: str | None = None
        self._ping_subscription: Any = None
        self.sweeps = 0  # s-thousand: sweeps begun (the descriptor count's turn)

    def start(self) -> None:
        self.loop_lag.start()
        self._tasks = [
            asyncio.create_task(self._sweep_loop(), name="rosey-watchdog-sweep"),
        ]
        if self.bus is not None:
            self._tasks.append(asyncio.create_task(self._ping_loop(), name="rosey-watchdog-ping"))
            self._tasks.append(asyncio.create_task(self._publish_loop(), name="rosey-watchdog-stats"))
        self._guard = DiskGuard(
            self.disk,
            self._disk_targets,
            self._over_disk_quota,
            interval=self.config.disk_interval,
            loop=asyncio.get_running_loop(),
        )
        self._guard.start()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        guard, self._guard = self._guard, None
        if guard is not None:
            await asyncio.to_thread(guard.stop)
        for proc in self._procs.values():
            proc.close()
        self._procs.clear()
        subscription, self._ping_subscription = self._ping_subscription, None
        self._reply_prefix = None
        if subscription is not None:
            with contextlib.suppress(Exception):  # the bus may be gone already
                await subscription.unsubscribe()
        await self.loop_lag.stop()

    # ------------------------------------------------------------------ sweep

    def sweep(self) -> None:
        """One pass over running plugins: record stats, enforce limits. Never blocks on I/O."""
        started = time.perf_counter()
        self.sweeps += 1
        for plugin in self.supervisor.running():
            self._sweep_one(plugin, time.monotonic())
        self._forget_gone()
        self.last_sweep_seconds = time.perf_counter() - started

    async def sweep_cooperatively(self, spread: float = 0.0) -> None:
        """The same pass, yielding to the event loop every ``SWEEP_CHUNK`` plugins; with
        ``spread`` (seconds) the chunks are spaced out over that time instead of back to back.

        Back to back, the chunks of 100 plugins still make one burst of the loop's time (a reply
        arriving then waits for all of them); spread over the interval, it waits for one at most.
        ``last_sweep_seconds`` is the work done, without the waits.
        """
        plugins = self.supervisor.running()
        self.sweeps += 1

        def one(plugin: ManagedPlugin) -> None:
            self._sweep_one(plugin, time.monotonic())

        self.last_sweep_seconds = await _in_chunks(plugins, one, spread)
        self._forget_gone()

    def _sweep_one(self, plugin: ManagedPlugin, now: float) -> None:
        process = plugin.process
        if plugin.state is not PluginState.RUNNING or process is None or not process.is_running():
            return
        pid = process.measured_pid  # the process running the plugin's code (see sandbox.pidns)
        if pid is None:
            return
        proc = self._procs.get(plugin.name)
        if proc is None or proc.pid != pid:
            if proc is not None:
                proc.close()
            proc = self._procs[plugin.name] = ProcStat(pid)
        count_fds = self.sweeps % FD_COUNT_EVERY == 0 or (
            bool(plugin.spec.limits.max_open_files) and not _kernel_caps_fds(process)
        )
        reading = proc.read(count_fds=count_fds)
        if reading is None:  # exiting: its exit is the supervisor's news, not a sample
            return
        sample = ResourceSample.from_stats(reading.as_stats(process.uptime_seconds), t=time.time())
        plugin.stats = sample
        plugin.history.append(sample)
        entry = self._cpu.get(plugin.name)
        if entry is None or entry[0] != pid:  # a new process is judged on its own readings only
            entry = self._cpu[plugin.name] = (pid, deque())
        samples = entry[1]
        add_cpu_reading(samples, now, sample.cpu_percent, plugin.spec.limits.cpu_window_seconds)
        reason = limit_violation(plugin.spec.limits, sample, samples, self._children(plugin))
        if reason is not None:
            samples.clear()
            self.supervisor.kill(plugin.name, reason)

    def _forget_gone(self) -> None:
        """Close the /proc files of processes that are no longer the plugin's current one."""
        for name, proc in list(self._procs.items()):
            plugin = self.supervisor.plugins.get(name)
            process = plugin.process if plugin is not None else None
            if process is None or process.measured_pid != proc.pid or not process.is_running():
                proc.close()
                del self._procs[name]

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
        interval = self.config.sweep_interval
        while True:
            started = time.monotonic()
            await self.sweep_cooperatively(spread=interval * SPREAD)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _publish_loop(self) -> None:
        every = self.config.publish_every
        while True:
            started = time.monotonic()
            await self._publish_stats(spread=every * SPREAD / 2)
            # The next round is due ``every`` after this one began, not after it ended.
            await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))

    async def _publish_stats(self, spread: float = 0.0) -> None:
        if self.bus is None:
            return
        bus = self.bus
        pending: list[tuple[str, dict[str, object]]] = []

        def one(plugin: ManagedPlugin) -> None:
            # Without history: the event says "now"; ``rosey status`` has the recent past.
            pending.append(
                (Subjects.lifecycle(plugin.spec.name, "stats"), plugin.status(history=0).to_dict())
            )

        async def flush() -> None:
            for subject, data in pending:
                with contextlib.suppress(BusNotConnected, OSError):
                    await bus.publish(subject, data, source="rosey-supervisor")
            pending.clear()

        await _in_chunks(self.supervisor.running(), one, spread, after_chunk=flush)

    # ------------------------------------------------------------------ disk quotas

    def _disk_targets(self) -> list[ManagedPlugin]:
        """The plugins with a disk quota whose process is starting or running.

        Called on the disk thread: ``list()`` of the dict's values is one step under the GIL,
        and each plugin is then read attribute by attribute (each read is atomic).
        """
        targets = []
        for plugin in list(self.supervisor.plugins.values()):
            if not plugin.spec.limits.max_disk_mb or plugin.process is None:
                continue
            if plugin.state in (PluginState.STARTING, PluginState.RUNNING):
                targets.append(plugin)
        return targets

    def _launched(self, name: str) -> None:
        """A plugin process was just launched: the disk guard measures it now, not at its next
        pass (a plugin could otherwise write for a whole interval unmeasured)."""
        plugin = self.supervisor.plugins.get(name)
        if self._guard is not None and plugin is not None and plugin.spec.limits.max_disk_mb:
            self._guard.wake()

    def _over_disk_quota(self, name: str, pid: int, reason: str) -> None:
        """On the loop, after the disk thread froze process ``pid`` of plugin ``name``: kill it."""
        plugin = self.supervisor.plugins.get(name)
        process = plugin.process if plugin is not None else None
        # Act only on the process that was measured (it may have been replaced meanwhile).
        if process is not None and process.pid == pid and process.is_running():
            self.supervisor.kill(name, reason)

    async def check_disk(self) -> None:
        """One pass of the disk thread's check, here and now (the thread runs it every
        ``disk_interval``): kill the plugins over their quota, with the reason."""
        guard = self._guard or DiskGuard(
            self.disk, self._disk_targets, self._over_disk_quota, loop=asyncio.get_running_loop()
        )
        await asyncio.to_thread(guard.check_all)
        await asyncio.sleep(0)  # the kills it scheduled

    # ------------------------------------------------------------------ liveness

    async def _ping_loop(self) -> None:
        interval = self.config.ping_interval
        while True:
            started = time.monotonic()
            targets = [p for p in self.supervisor.running() if p.state is PluginState.RUNNING]
            await self._ping_round(targets, interval * SPREAD)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _ping_round(self, targets: Sequence[ManagedPlugin], spread: float) -> None:
        """Ping ``targets`` (a chunk per step, the steps spread over ``spread`` seconds: 100
        requests sent, and 100 replies read, at once would hold the loop for all of them), then
        judge each ping ``ping_timeout`` after it left.

        s-thousand: no task, future or timer per ping. One request payload per round (the wire
        format carries no subject), published with a reply subject under one wildcard inbox of
        the watchdog's; replies are matched there by token. With 1,000 plugins that is 667 pings
        a second, and the task-per-request way cost ~4 % of a core in the bot.
        """
        assert self.bus is not None
        try:
            prefix = self._reply_prefix or await self._start_ping_inbox()
        except (BusNotConnected, OSError):
            return  # the bus is down: that is not the plugins' fault
        payload = Event(subject="rosey.control.ping", data={}, source="rosey-supervisor").to_bytes()
        client = self.bus.client
        sent: list[_Ping] = []
        chunk: list[_Ping] = []

        def ping(plugin: ManagedPlugin) -> None:
            pid = plugin.process.pid if plugin.process else None
            if pid is None:
                return
            self._ping_seq += 1
            record = _Ping(plugin=plugin, pid=pid, token=str(self._ping_seq), sent=time.monotonic())
            self._pings[record.token] = record
            sent.append(record)
            chunk.append(record)

        async def flush() -> None:
            # publish() appends to the client's buffer (its flusher task writes): no I/O wait here.
            for record in chunk:
                try:
                    await client.publish(_ping_subject(record.plugin), payload, reply=prefix + record.token)
                except Exception:  # the bus is down: the ping stays unanswered, judged below
                    logger.debug("liveness ping to '%s' not sent", record.plugin.name, exc_info=True)
            chunk.clear()

        try:
            await _in_chunks(targets, ping, spread, after_chunk=flush)
            if sent:
                await asyncio.sleep(max(0.0, sent[-1].sent + self.config.ping_timeout - time.monotonic()))
            for record in sent:
                self._judge(record)
        finally:
            for record in sent:
                self._pings.pop(record.token, None)

    async def _start_ping_inbox(self) -> str:
        assert self.bus is not None
        client = self.bus.client
        prefix = client.new_inbox() + "."
        try:
            self._ping_subscription = await client.subscribe(prefix + "*", cb=self._on_ping_reply)
        except Exception as exc:
            raise BusNotConnected(f"cannot subscribe to the liveness inbox: {exc}") from exc
        self._reply_prefix = prefix
        return prefix

    async def _on_ping_reply(self, msg: Msg) -> None:
        prefix = self._reply_prefix
        if prefix is None:
            return
        record = self._pings.get(msg.subject[len(prefix) :])
        if record is None or record.answered is not None:
            return
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            record.no_responders = True
            return
        record.answered = time.monotonic()
        try:
            data = Event.from_bytes(msg.data, msg.subject).data
        except MalformedEvent:
            data = {}  # it answered: alive, whatever it said
        record.plugin.ping = PingReply.from_wire(data)  # untrusted: read defensively

    def _judge(self, record: _Ping) -> None:
        """After its timeout: an answer in time clears the plugin's misses; no answer is a miss,
        unless the core's own loop was too late to read it; three in a row kill the plugin."""
        plugin, key = record.plugin, (record.plugin.name, record.pid)
        if record.answered is not None and record.answered - record.sent <= self.config.ping_timeout:
            self._missed.pop(key, None)
            return
        if not record.no_responders and self._core_was_late(plugin.name, record.sent):
            return
        missed = self._missed.get(key, 0) + 1
        self._missed[key] = missed
        if missed >= self.config.missed_pings_limit:
            self._missed.pop(key, None)
            process = plugin.process
            if process is None or process.pid != record.pid:
                return  # it was replaced meanwhile: the new process is judged on its own pings
            span = missed * (self.config.ping_interval + self.config.ping_timeout)
            self.supervisor.kill(plugin.name, f"unresponsive: missed {missed} liveness pings (~{span:.0f} s)")

    def _core_was_late(self, name: str, since: float) -> bool:
        """A timeout is the plugin's fault only if the core's loop gave it at least half the time."""
        late = self.loop_lag.lag_since(since)
        if late < self.config.ping_timeout / 2:
            return False
        self.excused_pings += 1
        logger.info("ping to '%s' not counted as missed: the core's loop ran %.0f ms late", name, late * 1000)
        return True


async def _in_chunks(
    items: Sequence[_T],
    work: Callable[[_T], object],
    spread: float,
    *,
    after_chunk: Callable[[], Awaitable[None]] | None = None,
) -> float:
    """``work(item)`` for each item, ``SWEEP_CHUNK`` at a time, yielding to the loop between
    chunks; with ``spread`` > 0 the chunks start evenly over ``spread`` seconds. Returns the
    seconds spent in ``work`` (the waits excluded)."""
    busy = 0.0
    chunks = max(1, -(-len(items) // SWEEP_CHUNK))
    step = spread / chunks
    began = time.monotonic()
    for n, index in enumerate(range(0, len(items), SWEEP_CHUNK)):
        started = time.perf_counter()
        for item in items[index : index + SWEEP_CHUNK]:
            work(item)
        busy += time.perf_counter() - started
        if after_chunk is not None:
            await after_chunk()
        # Sleep until the next chunk's slot (at least one loop iteration).
        await asyncio.sleep(max(0.0, began + (n + 1) * step - time.monotonic()) if spread > 0 else 0)
    return busy


def _kernel_caps_fds(process: PluginProcess) -> bool:
    """Whether the kernel holds the process to its open-files limit: its launcher applied the
    sandbox's rlimits (RLIMIT_NOFILE among them) before plugin code ran, as it reported on the
    readiness pipe (the launcher's word, not the plugin's)."""
    report = process.launch_report
    return report is not None and report.sandbox is not None and "rlimits" in report.sandbox


def _ping_subject(plugin: ManagedPlugin) -> str:
    """The subject one process answers pings on: a replica's own (issue 16), else the plugin's."""
    subject = Subjects.control(plugin.spec.name, "ping")
    return subject if plugin.spec.replica is None else f"{subject}.{plugin.spec.replica}"
