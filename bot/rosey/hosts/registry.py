"""The hub's view of its plugin hosts: who is connected, who is lost, what their plugins do.

Each host sends a heartbeat every second (:mod:`bot.rosey.hosts.wire`). A host not heard from
for ``heartbeat_timeout`` seconds is *lost*: its plugins' rows say so in ``rosey status`` and
the router refuses their commands at once ("plugin 'x' is on host 'b', which is unreachable")
instead of waiting for the command timeout. The state is computed from the time of the last
heartbeat whenever someone asks (one dict lookup and a clock read per command); a small task
notices the transitions: the operator's log says when a host went and came back, and the hub
publishes each on ``rosey.hosts.<host>.state`` (:func:`host_state_subject`; ``{"host", "state",
"previous"}``) for whoever watches the cluster. No host may publish there (its ceiling does not
allow it), so the event is the hub's word.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import StrEnum

from bot.rosey.broker.leaf import HOSTS_SUBJECT
from bot.rosey.core.event_bus import EventBus, Subscription
from bot.rosey.core.events import Event
from bot.rosey.hosts.config import HostEntry
from bot.rosey.hosts.declared import declared_from_wire
from bot.rosey.hosts.wire import Heartbeat
from bot.rosey.plugins.declared_commands import PluginCommands
from bot.rosey.supervision.status import PluginState, PluginStatus, unavailable_reason

__all__ = ["HostRegistry", "HostState", "host_state_subject"]

logger = logging.getLogger(__name__)


class HostState(StrEnum):
    WAITING = "waiting"  # never heard from since the hub started
    CONNECTED = "connected"
    LOST = "lost"


def host_state_subject(host: str) -> str:
    """Where the hub says host ``host`` became connected or lost."""
    return f"{HOSTS_SUBJECT}.{host}.state"


class HostRegistry:
    """Heartbeats of the hosts declared in ``[hosts.*]``; everything else on the subject is ignored."""

    def __init__(self, bus: EventBus, hosts: Mapping[str, HostEntry], *, timeout: float) -> None:
        self.bus = bus
        self.hosts = dict(hosts)
        self.timeout = timeout
        # s-spread: a plugin may be on several hosts (its replicas spread over them).
        self._plugin_hosts: dict[str, tuple[str, ...]] = {}
        for entry in hosts.values():
            for plugin in entry.plugins:
                self._plugin_hosts[plugin] = (*self._plugin_hosts.get(plugin, ()), entry.name)
        #: s-spread: told (host, when it was last heard from) when a connected host becomes lost.
        self.on_lost: Callable[[str, float], None] | None = None
        self._last: dict[str, float] = {}  # host -> monotonic time of its last heartbeat
        self._beats: dict[str, Heartbeat] = {}
        self._logged: dict[str, HostState] = {}
        self._subscription: Subscription | None = None
        self._watch: asyncio.Task[None] | None = None
        self._announcing: set[asyncio.Task[None]] = set()  # state events being published
        # --- s-remote: the remote plugins' declared commands (plugin -> them), as their hosts last
        # said; ``on_commands(host, its plugins' commands)`` when that changes.
        self.declared: dict[str, PluginCommands] = {}
        self.on_commands: Callable[[str, Mapping[str, PluginCommands]], None] | None = None
        self._raw_commands: dict[str, object] = {}
        self._commands_subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(f"{HOSTS_SUBJECT}.*.heartbeat", self._on_heartbeat)
        self._commands_subscription = await self.bus.subscribe(  # s-remote
            f"{HOSTS_SUBJECT}.*.commands", self._on_commands
        )
        self._watch = asyncio.get_running_loop().create_task(self._log_transitions())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._announcing:
            await asyncio.gather(*self._announcing, return_exceptions=True)
        for subscription in (self._subscription, self._commands_subscription):
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    # ------------------------------------------------------------------ queries

    def host_of(self, plugin: str) -> str | None:
        hosts = self._plugin_hosts.get(plugin)
        return hosts[0] if hosts else None

    def hosts_of(self, plugin: str) -> tuple[str, ...]:
        return self._plugin_hosts.get(plugin, ())

    def plugins(self) -> list[str]:
        return list(self._plugin_hosts)

    def last_heard(self, host: str) -> float | None:
        """s-spread: the monotonic time of ``host``'s last heartbeat (None: never heard)."""
        return self._last.get(host)

    def state(self, host: str) -> HostState:
        last = self._last.get(host)
        if last is None:
            return HostState.WAITING
        return HostState.CONNECTED if time.monotonic() - last < self.timeout else HostState.LOST

    def silent_for(self, host: str) -> float | None:
        last = self._last.get(host)
        return None if last is None else time.monotonic() - last

    def why_unavailable(self, plugin: str) -> str | None:
        """Said after "plugin 'x' ": why a remote plugin cannot take a command; None if it can (or
        if it is not a remote plugin)."""
        hosts = self._plugin_hosts.get(plugin, ())
        if not hosts:
            return None
        # s-spread: on several hosts, it serves while any of them has a replica that does.
        reasons = [self._why_on(host, plugin) for host in hosts]
        if any(reason is None for reason in reasons):
            return None
        down = [host for host in hosts if self.state(host) is not HostState.CONNECTED]
        if len(down) == len(hosts) and len(hosts) > 1:
            listed = ", ".join(f"'{h}'" for h in hosts)
            return f"is on hosts {listed}, which are unreachable"
        return reasons[0]

    def _why_on(self, host: str, plugin: str) -> str | None:
        if self.state(host) is not HostState.CONNECTED:
            return f"is on host '{host}', which is unreachable"
        rows = self._rows(host, plugin)
        if not rows:
            return f"is not reported by host '{host}' (is it in that host's rosey.toml?)"
        reasons = [unavailable_reason(row) for row in rows]
        return None if any(reason is None for reason in reasons) else reasons[0]

    def rows(self) -> list[PluginStatus]:
        """One status row per remote plugin, its host in the ``host`` column."""
        rows: list[PluginStatus] = []
        for host, entry in self.hosts.items():
            state = self.state(host)
            label = host if state is HostState.CONNECTED else f"{host} ({state.value})"
            for plugin in entry.plugins:
                found = self._rows(host, plugin)  # s-spread: one row per replica on that host
                if not found:
                    reason = (
                        f"host '{host}' has not connected since the hub started"
                        if state is HostState.WAITING
                        else f"not reported by host '{host}'"
                    )
                    found = [PluginStatus(name=plugin, state=PluginState.STOPPED, reason=reason)]
                for row in found:
                    if state is HostState.LOST:
                        silent = self.silent_for(host) or 0.0
                        row = replace(
                            row, reason=f"host '{host}' silent for {silent:.0f} s (last known: {row.state})"
                        )
                    rows.append(replace(row, host=label))
        return rows

    def summary(self) -> dict[str, str]:
        return {host: self.state(host).value for host in self.hosts}

    # ------------------------------------------------------------------ internals

    def _rows(self, host: str, plugin: str) -> list[PluginStatus]:
        """Every row of ``plugin`` on ``host``: ``x``, ``x#2``... (one per replica)."""
        beat = self._beats.get(host)
        if beat is None:
            return []
        return [row for row in beat.plugins if row.name.split("#")[0] == plugin]

    async def _on_heartbeat(self, event: Event) -> None:
        host = event.subject.split(".")[2]
        entry = self.hosts.get(host)
        if entry is None:  # the server lets only declared hosts publish here; a local test client may
            return
        self._beats[host] = Heartbeat.from_wire(host, event.data, entry.plugins)
        self._last[host] = time.monotonic()
        self._log_state(host)

    async def _on_commands(self, event: Event) -> None:
        """s-remote: a host's plugins' declared commands; the same message again costs one compare."""
        host = event.subject.split(".")[2]
        entry = self.hosts.get(host)
        if entry is None or event.data == self._raw_commands.get(host):
            return
        self._raw_commands[host] = event.data
        declared, problems = declared_from_wire(event.data, entry.plugins, host=host)
        for problem in problems:
            logger.warning("%s", problem)
        for plugin in entry.plugins:
            if plugin in declared:
                self.declared[plugin] = declared[plugin]
            else:
                self.declared.pop(plugin, None)
        logger.info("host %s: declared commands of %s", host, ", ".join(declared) or "none of its plugins")
        if self.on_commands is not None:
            self.on_commands(host, declared)

    def _log_state(self, host: str) -> None:
        state = self.state(host)
        previous = self._logged.get(host)
        if previous is state:
            return
        self._logged[host] = state
        if state is HostState.LOST and previous is HostState.CONNECTED and self.on_lost is not None:
            try:  # s-spread: the hub ends the commands that were on it
                self.on_lost(host, self._last[host])
            except Exception:  # the registry keeps watching whatever a listener does
                logger.exception("host %s: handling its loss failed", host)
        if state is HostState.CONNECTED:
            logger.info("host %s connected (%s)", host, ", ".join(self.hosts[host].plugins))
        elif state is HostState.LOST:
            logger.warning("host %s lost: no heartbeat for %.0f s", host, self.timeout)
        task = asyncio.get_running_loop().create_task(self._announce(host, state, previous))
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def _announce(self, host: str, state: HostState, previous: HostState | None) -> None:
        data = {"host": host, "state": state.value, "previous": previous.value if previous else None}
        with contextlib.suppress(Exception):  # the bus down: the log line above still says it
            await self.bus.publish(host_state_subject(host), data, "rosey-hub")

    async def _log_transitions(self) -> None:
        while True:
            await asyncio.sleep(self.timeout / 6)
            for host in self.hosts:
                if host in self._last:
                    self._log_state(host)
