"""Supervisor: many plugin processes, each a small state machine with a restart policy.

Each plugin gets one lifecycle task: start -> ready -> wait for exit (seen via pidfd within
milliseconds) -> ask :func:`~bot.rosey.supervision.restart.decide` what next (restart after a
delay, stop, or fail) and carry it out. Every state change is published as a
:class:`~bot.rosey.supervision.lifecycle.LifecycleEvent` on ``rosey.lifecycle.<name>.<state>``,
in order, without the lifecycle ever waiting for the bus. Beside that flow, a watchdog sweeps
resource use and liveness without blocking the loop (see ``watchdog.py``). The supervisor never
sits in the command path: commands go router -> NATS -> plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bot.rosey.core.event_bus import EventBus
from bot.rosey.errors import PluginNotFound, PluginReloadError, PluginStartError
from bot.rosey.plugins.contract import PingReply
from bot.rosey.plugins.plugin_runner import PluginProcess
from bot.rosey.plugins.process.budget import OutputRate
from bot.rosey.plugins.process.child_exit import describe_exit
from bot.rosey.plugins.process.output import OutputLine
from bot.rosey.supervision.disk import DiskUsage
from bot.rosey.supervision.lifecycle import LifecycleEvent, LifecyclePublisher
from bot.rosey.supervision.restart import (
    Exited,
    Fail,
    Killed,
    Restart,
    RunEnd,
    StartFailed,
    Stop,
    StoppedOnRequest,
    SupervisorConfig,
    decide,
)
from bot.rosey.supervision.spec import Limits, PluginSpec, ProcessKind
from bot.rosey.supervision.status import (
    STATUS_HISTORY,
    PluginState,
    PluginStatus,
    ResourceSample,
    history_per_plugin,
    kill_cause,
    unavailable_reason,
)

__all__ = ["ManagedPlugin", "StartCheck", "StartNotice", "Supervisor"]

logger = logging.getLogger(__name__)

ProcessFactory = Callable[[PluginSpec], PluginProcess]
OutputListener = Callable[[str, OutputLine], None]


@dataclass(frozen=True, kw_only=True)
class StartNotice:
    """What a plugin asked for and was not granted, found before one of its starts, and the lines
    the host writes about it into the plugin's log (see ``grant_review``)."""

    not_granted: tuple[str, ...] = ()
    log_lines: tuple[str, ...] = ()


#: Called (in a thread: it reads the plugin's source) before each start of a plugin. The app
#: provides it; the supervisor knows no configuration and grants nothing from it.
StartCheck = Callable[[PluginSpec], StartNotice]


@dataclass
class ManagedPlugin:
    spec: PluginSpec
    process: PluginProcess | None = None
    #: issue 16: its name in the supervisor (``echo``; ``echo#2`` for a plugin's second replica).
    key: str = ""
    _state: PluginState = PluginState.STOPPED
    restarts: int = 0
    crashes_in_a_row: int = 0  # since the last stable run; the restart decision's streak ...
    waits_in_a_row: int = 0  # ... and the backoff waits in it (each doubles the next)
    start_failure: str | None = None  # why the previous run failed to start (None: it got ready)
    ever_ready: bool = False  # ready at least once since the last start() (boot or `rosey start`)
    last_exit: str | None = None
    failure_reason: str | None = None
    kill_reason: str | None = None  # set by the watchdog before it kills, reported as the exit
    ready_ms: float | None = None
    want_running: bool = False
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stats: ResourceSample | None = None  # the watchdog's last sample
    history: deque[ResourceSample] = field(default_factory=lambda: deque(maxlen=120))
    ping: PingReply | None = None  # the plugin's last answer to a liveness ping (its own claims)
    disk: DiskUsage | None = None  # the watchdog's last measurement of its data dir
    kills: dict[str, int] = field(default_factory=dict)  # watchdog kills since the bot started, by cause
    not_granted: tuple[str, ...] = ()  # requested in its source, not granted, as of its last start
    rebuild: bool = False  # issue 16: its settings changed; the next start builds a new process

    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set at every state change

    @property
    def name(self) -> str:
        return self.key or self.spec.name

    @property
    def state(self) -> PluginState:
        return self._state

    def set_state(self, value: PluginState) -> PluginState | None:
        """Enter ``value``; return the previous state if it changed, else None.

        Only the supervisor calls this, so that it can publish every change.
        """
        previous = self._state
        if value is previous:
            return None
        logger.debug("plugin '%s': %s -> %s", self.spec.name, previous.value, value.value)
        self._state = value
        self.changed.set()
        self.changed = asyncio.Event()
        return previous

    def status(self, *, history: int = STATUS_HISTORY) -> PluginStatus:
        """One row of ``rosey status``, with the last ``history`` resource samples."""
        running = self.process is not None and self.process.is_running()
        stats = self.stats
        ping = self.ping
        # The launcher's report, read before plugin code ran; the ping's `sandbox` is only the
        # plugin's claim and is not shown.
        current = self.process if running else None
        launch = current.launch_report if current is not None else None
        launched_by = current.launched_by if current is not None else None
        return PluginStatus(
            name=self.name,
            replica=self.spec.replica,
            state=self.state,
            kind=self.spec.kind.value,
            pid=self.process.pid if running and self.process else None,
            restarts=self.restarts,
            cpu_percent=round(stats.cpu_percent if stats else 0.0, 1) if running else None,
            memory_mb=round(stats.memory_mb if stats else 0.0, 1) if running else None,
            uptime_seconds=round(self.process.uptime_seconds, 1) if running and self.process else 0.0,
            last_exit=self.last_exit,
            reason=self.failure_reason,
            ready_ms=None if self.ready_ms is None else round(self.ready_ms, 1),
            num_threads=stats.num_threads if running and stats else None,
            num_fds=stats.num_fds if running and stats else None,
            commands=ping.commands if ping else None,
            command_errors=ping.errors if ping else None,
            latency_ms_p50=ping.latency_ms_p50 if ping else None,
            permission_violations=ping.permission_violations if ping else None,
            sandbox=",".join(launch.sandbox) if launch and launch.sandbox is not None else None,
            sandbox_source="launcher" if launch else None,
            launcher=launched_by.value if launched_by is not None else None,
            disk_mb=round(self.disk.mb, 1) if running and self.disk is not None else None,
            cpu_seconds=stats.cpu_seconds if running and stats else None,
            kills=dict(self.kills),
            not_granted=self.not_granted,
            history=tuple(self.history)[-history:] if history > 0 else (),
        )


class Supervisor:
    """Starts, watches, restarts and stops a set of plugins."""

    def __init__(
        self,
        bus: EventBus | None,
        specs: Iterable[PluginSpec],
        factory: ProcessFactory,
        config: SupervisorConfig | None = None,
    ) -> None:
        self.bus = bus
        self.config = config or SupervisorConfig()
        self._factory = factory
        self.plugins: dict[str, ManagedPlugin] = {}
        #: issue 16: plugin name -> the keys of its processes (``echo``, ``echo#2``, ...).
        self.groups: dict[str, list[str]] = {}
        for spec in specs:
            self.add(spec)
        self._first_ready: dict[str, asyncio.Future[None]] = {}
        self._output_listeners: list[OutputListener] = []
        self._launch_listeners: list[Callable[[str], None]] = []
        self.events = LifecyclePublisher(bus, source="rosey-supervisor")
        #: Before each start of a plugin: its requests against its grants (None: not checked).
        self.start_check: StartCheck | None = None

    def add(self, spec: PluginSpec) -> list[ManagedPlugin]:
        """Manage ``spec`` (stopped until started): one entry per replica (issue 16)."""
        if spec.name in self.groups:
            raise ValueError(f"plugin {spec.name!r} is defined twice")
        added = []
        for replica in range(1, spec.replicas + 1):
            key = spec.name if replica == 1 else f"{spec.name}#{replica}"
            one = dataclasses.replace(spec, replica=replica) if spec.replicas > 1 else spec
            state = PluginState.STOPPED if spec.enabled else PluginState.DISABLED
            managed = ManagedPlugin(spec=one, key=key, _state=state)
            if spec.load_error is not None and spec.enabled:
                managed._state = PluginState.FAILED  # nothing to start: say why from the start
                managed.failure_reason = f"failed to load: {spec.load_error}"
            self.plugins[key] = managed
            added.append(managed)
        self.groups[spec.name] = [m.name for m in added]
        return added

    def remove(self, name: str) -> None:
        """issue 16: forget a stopped plugin (every replica): it left the configuration."""
        for member in self.members(name):
            if member.want_running:
                raise ValueError(f"plugin {member.name!r} is still running")
            del self.plugins[member.name]
        self.groups.pop(name, None)

    def replace_spec(self, spec: PluginSpec) -> None:
        """issue 16: ``spec``'s settings for its plugin from its next start on (same replicas)."""
        for member in self.members(spec.name):
            member.spec = dataclasses.replace(spec, replica=member.spec.replica)
            member.rebuild = True

    def members(self, name: str) -> list[ManagedPlugin]:
        """issue 16: the processes ``name`` stands for: every replica of a plugin, or one replica
        by its key (``echo#2``)."""
        keys = self.groups.get(name)
        if keys is None:
            return [self.get(name)]
        return [self.plugins[key] for key in keys]

    def add_output_listener(self, listener: OutputListener) -> None:
        """Call ``listener(plugin_name, line)`` for every output line of every plugin, across restarts."""
        self._output_listeners.append(listener)

    def _forward_output(self, name: str, line: OutputLine) -> None:
        for listener in self._output_listeners:
            listener(name, line)

    def add_launch_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(plugin_key)`` as soon as a process of the plugin reports its launch
        (the watchdog's disk guard measures it then, not at its next pass)."""
        self._launch_listeners.append(listener)

    def _forward_launch(self, name: str) -> None:
        for listener in self._launch_listeners:
            listener(name)

    # ------------------------------------------------------------------ queries

    def why_unavailable(self, name: str) -> str | None:
        """Why plugin ``name`` cannot take a command right now, in words for the user; None if it
        can (or is unknown here). The router asks before every command: while the plugin runs this
        is one dict lookup and one comparison."""
        keys = self.groups.get(name)
        if keys is None:
            return None
        plugin = self.plugins[keys[0]]
        if plugin.state is PluginState.RUNNING or plugin.spec.kind is not ProcessKind.PLUGIN:
            return None
        for key in keys[1:]:  # issue 16: one running replica serves
            if self.plugins[key].state is PluginState.RUNNING:
                return None
        return unavailable_reason(plugin.status(history=0))

    def get(self, name: str) -> ManagedPlugin:
        try:
            return self.plugins[name]
        except KeyError:
            known = ", ".join(sorted(self.plugins)) or "none"
            raise PluginNotFound(f"no plugin named {name!r} (known: {known})", plugin=name) from None

    def names(self, kind: ProcessKind | None = None) -> list[str]:
        """Every managed process's name, or those of one ``kind`` (plugins, adapters)."""
        if kind is None:
            return list(self.groups)
        return [name for name, keys in self.groups.items() if self.plugins[keys[0]].spec.kind is kind]

    def running(self) -> list[ManagedPlugin]:
        return [p for p in self.plugins.values() if p.process is not None and p.process.is_running()]

    def status(self, *, history: int | None = None) -> list[PluginStatus]:
        """Every plugin's row; ``history`` samples each (default: each one's share of
        ``STATUS_HISTORY_BUDGET``, so that the status of 1,000 plugins stays small)."""
        per_plugin = history_per_plugin(len(self.plugins)) if history is None else history
        return [p.status(history=per_plugin) for p in self.plugins.values()]

    async def wait_for_state(
        self, name: str, predicate: Callable[[ManagedPlugin], bool], timeout: float
    ) -> ManagedPlugin:
        """Wait (on state-change events, no polling) until ``predicate(plugin)`` holds."""
        plugin = self.get(name)

        async def wait() -> None:
            while not predicate(plugin):
                await plugin.changed.wait()

        await asyncio.wait_for(wait(), timeout)
        return plugin

    # ------------------------------------------------------------------ control

    async def start_all(self) -> dict[str, PluginStartError | None]:
        """Start every enabled plugin in parallel; return name -> None (ready) or why it did not start."""
        names = [name for name, keys in self.groups.items() if self.plugins[keys[0]].spec.enabled]
        results = await asyncio.gather(*(self.start(n) for n in names), return_exceptions=True)
        outcome: dict[str, PluginStartError | None] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, PluginStartError):
                raise result  # not a plugin's failure (cancelled, or a bug): not ours to swallow
            outcome[name] = result
        return outcome

    async def start(self, name: str) -> None:
        """Start (or re-enable) a plugin (every replica) and wait for its first ready or its first
        failure.

        Raises :class:`PluginStartError` when that first start fails (it is retried per policy).
        """
        members = self.members(name)
        if len(members) > 1:
            results = await asyncio.gather(*(self._start_one(m) for m in members), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return
        await self._start_one(members[0])

    async def _start_one(self, plugin: ManagedPlugin) -> None:
        name = plugin.name
        if plugin.want_running and plugin.task is not None and not plugin.task.done():
            return
        if plugin.spec.load_error is not None:  # retrying cannot help: the file itself is broken
            plugin.failure_reason = f"failed to load: {plugin.spec.load_error}"
            raise PluginStartError(f"plugin '{name}' {plugin.failure_reason}", plugin=name)
        plugin.want_running = True
        plugin.crashes_in_a_row = plugin.waits_in_a_row = 0
        plugin.start_failure = None
        plugin.ever_ready = False
        plugin.failure_reason = None
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._first_ready[name] = first
        plugin.task = asyncio.create_task(self._lifecycle(plugin), name=f"rosey-plugin-{name}")
        plugin.task.add_done_callback(functools.partial(self._lifecycle_ended, plugin))
        await first

    def _lifecycle_ended(self, plugin: ManagedPlugin, task: asyncio.Task[None]) -> None:
        """A lifecycle that died of a bug still releases its waiter and says why."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        logger.error(
            "plugin '%s' supervision failed: %r",
            plugin.name,
            exc,
            exc_info=exc,
            extra={"plugin": plugin.name},
        )
        self._give_up(plugin, f"supervision failed: {exc!r}")

    async def stop(self, name: str) -> None:
        """Stop a plugin (every replica, in parallel) or one replica by its key."""
        await asyncio.gather(*(self._stop_one(m) for m in self.members(name)))

    async def _stop_one(self, plugin: ManagedPlugin) -> None:
        plugin.want_running = False
        plugin.wake.set()
        process = plugin.process
        if process is not None and process.is_running():
            self._transition(plugin, PluginState.STOPPING, reason="stop requested")
            await process.stop(self.config.stop_timeout)
        if plugin.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await plugin.task
        final = PluginState.STOPPED if plugin.spec.enabled else PluginState.DISABLED
        self._transition(plugin, final, reason="stop requested")

    async def restart(self, name: str) -> None:
        """Stop then start; replicas one by one, so the others serve meanwhile (issue 16)."""
        for member in self.members(name):
            await self._stop_one(member)
            await self._start_one(member)

    async def reload(self, name: str) -> None:
        """issue 16: the new version of each replica beside the old, one replica at a time: start
        it, wait for ready (it joins the queue group), then stop the old one, which leaves the
        group, finishes its commands in flight and exits. Raises :class:`PluginReloadError` (the
        old process keeps serving) when a new one does not get ready."""
        for member in self.members(name):
            await self._reload_one(member)

    async def _reload_one(self, plugin: ManagedPlugin) -> None:
        old = plugin.process
        if plugin.state is not PluginState.RUNNING or old is None or not old.is_running():
            # Nothing serves that could keep serving: a plain restart says how the start went.
            await self._stop_one(plugin)
            await self._start_one(plugin)
            return
        keeps = f"the old one (pid {old.pid}) keeps serving"
        try:
            new = self._factory(plugin.spec)
        except Exception as exc:  # a configuration the process cannot be built from
            raise PluginReloadError(
                f"plugin '{plugin.name}': the new version cannot be started: {exc}; {keeps}",
                plugin=plugin.spec.name,
            ) from exc
        new.join_after_start = True  # a version that fails on_start takes no command with it
        new.output.add_listener(functools.partial(self._forward_output, plugin.name))
        new.on_launched = functools.partial(self._forward_launch, plugin.name)
        new.limit_output(_output_rate(plugin.spec.limits), on_flood=lambda reason: new.kill_tree())
        await self._check_grants(plugin, new)
        try:
            await new.start()
        except (PluginStartError, OSError) as exc:
            why = new.start_failure or new.last_exit or str(exc)
            logger.error(
                "plugin '%s' reload failed: %s; %s", plugin.name, why, keeps, extra={"plugin": plugin.name}
            )
            raise PluginReloadError(
                f"plugin '{plugin.name}': the new version failed to start: {why}; {keeps}",
                plugin=plugin.spec.name,
                reason=why,
            ) from exc
        if plugin.process is not old or not old.is_running() or not plugin.want_running:
            await new.stop(self.config.stop_timeout)  # the old one ended meanwhile: its lifecycle decides
            raise PluginReloadError(
                f"plugin '{plugin.name}': the old process ended during the reload; the new one was stopped",
                plugin=plugin.spec.name,
            )
        # The new one is subscribed (ready): hand over, then let the old one drain and stop.
        new.limit_output(_output_rate(plugin.spec.limits), on_flood=functools.partial(self.kill, plugin.name))
        plugin.process = new
        plugin.ready_ms = (new.ready_seconds or 0.0) * 1000
        logger.info(
            "plugin '%s' reloaded: pid %s serves, pid %s drains",
            plugin.name,
            new.pid,
            old.pid,
            extra={"plugin": plugin.name},
        )
        await old.stop(self.config.stop_timeout)

    async def stop_all(self) -> None:
        """Stop every plugin in parallel (each gets SIGTERM, so its on_stop runs), then hand the
        last lifecycle events to the bus."""
        await asyncio.gather(*(self._stop_one(p) for p in self.plugins.values()), return_exceptions=True)
        await self.events.flush()

    def kill(self, name: str, reason: str) -> None:
        """Kill a plugin and its children now (it broke a limit or stopped answering).

        It restarts per its policy, with ``reason`` as its last exit.
        """
        plugin = self.get(name)
        if plugin.process is not None and plugin.process.is_running():
            logger.warning("killing plugin '%s': %s", name, reason, extra={"plugin": name})
            plugin.kill_reason = reason
            cause = kill_cause(reason)
            plugin.kills[cause] = plugin.kills.get(cause, 0) + 1
            plugin.process.kill_tree()

    # ------------------------------------------------------------------ lifecycle

    async def _lifecycle(self, plugin: ManagedPlugin) -> None:
        """Run, ask what next, do it: until the decision is to stop or to fail."""
        while plugin.want_running:
            ran = await self._run(plugin)
            if ran is None:
                return  # gave up: the process cannot even be built
            end, ran_for = ran
            decision = decide(
                plugin.spec.restart,
                end,
                crashes_in_a_row=plugin.crashes_in_a_row,
                waits_in_a_row=plugin.waits_in_a_row,
                ran_for=ran_for,
                config=self.config,
                previous_start_failure=plugin.start_failure,
                ever_ready=plugin.ever_ready,
            )
            match decision:
                case Restart(
                    delay=delay, crashes_in_a_row=crashes, waits_in_a_row=waits, start_failure=failure
                ):
                    plugin.crashes_in_a_row, plugin.waits_in_a_row = crashes, waits
                    plugin.start_failure = failure
                    if delay > 0:
                        await self._back_off(plugin, delay)
                    else:
                        logger.info("restarting plugin '%s' now", plugin.name, extra={"plugin": plugin.name})
                    if plugin.want_running:
                        plugin.restarts += 1
                case Fail(reason=reason):
                    logger.error("plugin '%s' failed: %s", plugin.name, reason, extra={"plugin": plugin.name})
                    plugin.failure_reason = reason
                    plugin.want_running = False
                    self._transition(plugin, PluginState.FAILED, reason=reason)
                case Stop():
                    if not isinstance(end, StoppedOnRequest):  # stop() itself says "stopped"
                        plugin.want_running = False
                        self._transition(plugin, PluginState.STOPPED, reason=plugin.last_exit)
                    break
        self._resolve_first(plugin, None)

    async def _run(self, plugin: ManagedPlugin) -> tuple[RunEnd, float] | None:
        """One run: start, wait for ready, wait for exit. How it ended and how long it lasted."""
        self._transition(plugin, PluginState.STARTING)
        plugin.kill_reason = None
        # One PluginProcess per plugin: its output survives restarts (a new one after its settings changed).
        if plugin.process is None or plugin.rebuild:
            plugin.rebuild = False
            try:
                plugin.process = self._factory(plugin.spec)
            except Exception as exc:  # a configuration the process cannot be built from
                self._give_up(plugin, f"cannot be started: {exc}")
                return None
            plugin.process.output.add_listener(functools.partial(self._forward_output, plugin.name))
            plugin.process.on_launched = functools.partial(self._forward_launch, plugin.name)
            plugin.process.limit_output(
                _output_rate(plugin.spec.limits), on_flood=functools.partial(self.kill, plugin.name)
            )
        process = plugin.process
        started = time.monotonic()
        await self._check_grants(plugin, process)
        try:
            await process.start()
        except (PluginStartError, OSError) as exc:
            # Killed while starting (an output flood, a disk quota): the reason, not the signal;
            # else the plugin's own exception, in one line.
            plugin.last_exit = (
                plugin.kill_reason or process.start_failure or process.last_exit or "failed to start"
            )
            self._resolve_first(plugin, _start_error(plugin.name, exc))
            if not plugin.want_running:  # stopped while starting: not a failure
                return StoppedOnRequest(returncode=process.returncode), time.monotonic() - started
            # One line: the plugin's stderr (its traceback) is in the log already, once.
            logger.error(
                "plugin '%s' failed to start: %s",
                plugin.name,
                plugin.last_exit,
                extra={"plugin": plugin.name},
            )
            self._transition(
                plugin, PluginState.CRASHED, reason=plugin.last_exit, returncode=process.returncode
            )
            failed = StartFailed(reason=plugin.last_exit, raised=process.start_failure_raised)
            return failed, time.monotonic() - started
        if not plugin.want_running:
            # stop() came while this start was under way, before the new process existed (a fork
            # from the zygote is awaited), so it found nothing to stop: stop the new one here.
            returncode = await process.stop(self.config.stop_timeout)
            if returncode is not None:
                plugin.last_exit = describe_exit(returncode)
            self._resolve_first(plugin, None)
            return StoppedOnRequest(returncode=returncode), time.monotonic() - started
        plugin.ready_ms = (process.ready_seconds or 0.0) * 1000
        plugin.ever_ready = True
        self._transition(plugin, PluginState.RUNNING)
        self._resolve_first(plugin, None)
        returncode = await process.wait()
        while plugin.process is not None and plugin.process is not process:
            # issue 16: reloaded; the old process ended after handing over to the new one.
            process = plugin.process
            returncode = await process.wait()
        ran_for = time.monotonic() - started
        if not plugin.want_running:
            plugin.last_exit = describe_exit(returncode)
            return StoppedOnRequest(returncode=returncode), ran_for
        end: RunEnd
        if plugin.kill_reason is not None:
            end = Killed(reason=plugin.kill_reason, returncode=returncode)
        else:
            end = Exited(returncode=returncode)
        plugin.last_exit = end.description
        if end.crashed:
            # Published at once (before any backoff): the router fails the commands in flight.
            self._transition(plugin, PluginState.CRASHED, reason=end.description, returncode=returncode)
        else:
            logger.info("plugin '%s' %s", plugin.name, end.description, extra={"plugin": plugin.name})
        return end, ran_for

    async def _check_grants(self, plugin: ManagedPlugin, process: PluginProcess) -> None:
        """Once per start, before the plugin's code runs: what it requests and was not granted,
        kept for its status and said once in its log. It changes nothing the plugin gets."""
        check = self.start_check
        if check is None or plugin.spec.kind is not ProcessKind.PLUGIN:
            return
        try:
            notice = await asyncio.to_thread(check, plugin.spec)
        except Exception as exc:  # a report must never keep a plugin from starting
            logger.warning(
                "plugin '%s': cannot compare its requests with its grants: %r",
                plugin.name,
                exc,
                extra={"plugin": plugin.name},
            )
            notice = StartNotice()
        plugin.not_granted = notice.not_granted
        for line in notice.log_lines:
            process.output.note(line)
            logger.warning("plugin '%s': %s", plugin.name, line, extra={"plugin": plugin.name})

    async def _back_off(self, plugin: ManagedPlugin, delay: float) -> None:
        self._transition(plugin, PluginState.BACKOFF, reason=plugin.last_exit, delay=delay)
        logger.info("restarting plugin '%s' in %.1fs", plugin.name, delay, extra={"plugin": plugin.name})
        plugin.wake.clear()
        if not plugin.want_running:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(plugin.wake.wait(), delay)  # stop() cuts the wait short

    def _give_up(self, plugin: ManagedPlugin, reason: str) -> None:
        """No retry can help (bad configuration): failed, with the reason, and tell the waiter."""
        logger.error("plugin '%s' %s", plugin.name, reason, extra={"plugin": plugin.name})
        plugin.failure_reason = reason
        plugin.want_running = False
        self._transition(plugin, PluginState.FAILED, reason=reason)
        self._resolve_first(plugin, PluginStartError(f"plugin '{plugin.name}' {reason}", plugin=plugin.name))

    def _resolve_first(self, plugin: ManagedPlugin, error: BaseException | None) -> None:
        first = self._first_ready.pop(plugin.name, None)
        if first is None or first.done():
            return
        if error is None:
            first.set_result(None)
        else:
            first.set_exception(error)

    # ------------------------------------------------------------------ lifecycle events

    def _transition(
        self,
        plugin: ManagedPlugin,
        state: PluginState,
        *,
        reason: str | None = None,
        returncode: int | None = None,
        delay: float | None = None,
    ) -> None:
        """Enter ``state`` and, if that is a change, publish it (queued: this never waits)."""
        previous = plugin.set_state(state)
        if previous is None or self.bus is None:
            return
        process = plugin.process
        # issue 16: a replica's crash names the commands it held, so the router fails (or re-sends)
        # those and no other; a plugin's only process fails all its commands in flight, as before.
        replica = plugin.spec.replica
        crashed = state is PluginState.CRASHED and replica is not None and process is not None
        self.events.emit(
            LifecycleEvent(
                plugin=plugin.spec.name,
                replica=replica,
                in_flight=process.open_commands() if crashed and process is not None else None,
                idempotent=bool(crashed and process is not None and process.ledger.idempotent),
                state=state,
                previous=previous,
                reason=reason,
                last_exit=plugin.last_exit,
                returncode=returncode,
                delay=delay,
                restarts=plugin.restarts,
                pid=process.pid if process is not None and state is not PluginState.STARTING else None,
            )
        )


def _output_rate(limits: Limits) -> OutputRate | None:
    """The rate a plugin's output is read at under ``limits``; None when neither rate is limited."""
    if limits.max_output_bytes_per_second is None and limits.max_output_lines_per_second is None:
        return None
    return OutputRate(
        bytes_per_second=limits.max_output_bytes_per_second,
        lines_per_second=limits.max_output_lines_per_second,
    )


def _start_error(name: str, exc: BaseException) -> PluginStartError:
    """What ``start()`` raises for a failed first start: always a PluginStartError."""
    if isinstance(exc, PluginStartError):
        return exc
    error = PluginStartError(f"plugin '{name}' failed to start: {exc}")
    error.__cause__ = exc
    return error
