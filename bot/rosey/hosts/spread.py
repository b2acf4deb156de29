"""One plugin's replicas on several machines: on several hosts, and on the hub too (``[hub] also_runs``).

Every process of the plugin, wherever it runs, subscribes to ``rosey.commands.<p>.execute`` in
the same NATS queue group, and the leaf connections carry the group's interest to the hub. The
hub's nats-server then chooses (verified with nats-server 2.15, see docs/operations-hosts.md):

- a member connected to the hub's own server, whenever there is one (local members first): the
  hub's replicas take every command while one of them runs, the hosts' are standby;
- otherwise one of the leaf connections with members, weighted by how many members each has.

What the hub must add to that:

- **Answers.** A host may publish answers only into the inboxes granted to it (no
  ``allow_responses`` across a leaf connection). A spread plugin's commands are therefore sent
  from a connection of their own, ``_INBOX.rosey_spread_<p>``, granted to every host that carries
  ``p``: any of them may answer (or forge an answer to) a command for ``p``, a plugin it is
  trusted with anyway, never anything else.
- **A lost host.** A host killed with its plugins sends no crash event. When the registry marks
  it lost, the hub ends at once, with the crash reply, each of the plugin's commands in flight
  that was sent before the host went silent and that no surviving carrier holds (each host
  answers ``rosey.hosts.<host>.control.held`` from its replicas' command ledgers; the hub asks
  its own supervisor). Its other commands carry on: NATS stopped giving the lost host commands
  the moment its leaf connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from bot.rosey.broker.leaf import host_control_subject
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import RoseyError
from bot.rosey.services.base import RequestService
from bot.rosey.supervision.lifecycle import LifecycleEvent
from bot.rosey.supervision.status import PluginState

__all__ = [
    "HELD_ACTION",
    "HeldService",
    "LossHandler",
    "held_by",
    "spread_inbox_prefix",
]

logger = logging.getLogger(__name__)

SOURCE = "rosey-hosts"
HELD_ACTION = "held"
#: How long the hub waits for a surviving host to say which commands it holds.
HELD_TIMEOUT = 2.0


def spread_inbox_prefix(plugin: str) -> str:
    """Where the hub's commands to a spread plugin get their answers (every carrier may answer)."""
    return f"_INBOX.rosey_spread_{plugin}"


class _Process(Protocol):
    def open_commands(self) -> tuple[str, ...]: ...


class _Managed(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def process(self) -> _Process | None: ...


def held_by(plugins: Mapping[str, Any], plugin: str) -> set[str]:
    """The commands ``plugin``'s running replicas (supervisor keys ``p``, ``p#2``...) hold now."""
    held: set[str] = set()
    for key, managed in plugins.items():
        if key.split("#")[0] != plugin:
            continue
        process = getattr(managed, "process", None)
        if process is not None:
            with contextlib.suppress(Exception):  # a process being replaced: what it held is gone
                held.update(process.open_commands())
    return held


class HeldService:
    """A host's answer to the hub's ``held`` question: its replicas' open commands for a plugin."""

    def __init__(self, bus: EventBus, host: str, plugins: Callable[[], Mapping[str, Any]]) -> None:
        self.plugins = plugins
        self._service = RequestService(
            bus, {host_control_subject(host, HELD_ACTION): self._held}, source=SOURCE
        )

    async def start(self) -> None:
        await self._service.start()

    async def stop(self) -> None:
        await self._service.stop()

    async def _held(self, request: Mapping[str, Any]) -> dict[str, Any]:
        name = request.get("name")
        return {"held": sorted(held_by(self.plugins(), name)) if isinstance(name, str) else []}


class LossHandler:
    """The hub's reaction to a lost host: end the commands that were on it, at once."""

    def __init__(
        self,
        *,
        core: EventBus,
        buses: Mapping[str, EventBus],
        hosts_of: Callable[[str], tuple[str, ...]],
        plugins_of: Callable[[str], Iterable[str]],
        connected: Callable[[str], bool],
        in_flight: Callable[[str, float], set[str]],
        local_held: Callable[[str], set[str]] | None,
        also_runs: Iterable[str],
        margin: float,
    ) -> None:
        self.core = core
        self.buses = buses
        self.hosts_of = hosts_of
        self.plugins_of = plugins_of
        self.connected = connected
        self.in_flight = in_flight
        self.local_held = local_held
        self.also_runs = frozenset(also_runs)
        #: Commands sent this long before the loss was noticed may be on a survivor not yet read
        #: them; they are left to their own answer (or timeout). A lost host went silent earlier.
        self.margin = margin
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, host: str, last_heard: float) -> None:
        task = asyncio.get_running_loop().create_task(self.handle(host, last_heard))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def handle(self, host: str, last_heard: float) -> None:
        cutoff = time.monotonic() - self.margin
        for plugin in self.plugins_of(host):
            ids = self.in_flight(plugin, cutoff)
            if not ids:
                continue
            survivors = [h for h in self.hosts_of(plugin) if h != host and self.connected(h)]
            held: set[str] | None = set()
            if plugin in self.also_runs and self.local_held is not None:
                held = self.local_held(plugin)
            for other in survivors:
                on_other = await self._held_on(other, plugin)
                held = None if held is None or on_other is None else held | on_other
            if held is None:
                continue  # a survivor did not say: its commands keep their own answer (or timeout)
            lost = sorted(ids - held)
            if not lost:
                continue
            logger.warning(
                "host %s lost: ending %d command(s) of plugin %s that were on it", host, len(lost), plugin
            )
            crash = LifecycleEvent(
                plugin=plugin,
                state=PluginState.CRASHED,
                previous=PluginState.RUNNING,
                reason=f"its host '{host}' became unreachable",
                in_flight=tuple(lost),
            )
            with contextlib.suppress(RoseyError, OSError):
                await self.core.publish_event(
                    Event(subject=Subjects.lifecycle(plugin, "crashed"), data=crash.to_dict(), source=SOURCE)
                )

    async def _held_on(self, host: str, plugin: str) -> set[str] | None:
        bus = self.buses.get(host)
        if bus is None:
            return None
        try:
            reply = await bus.request(
                host_control_subject(host, HELD_ACTION), {"name": plugin}, SOURCE, timeout=HELD_TIMEOUT
            )
        except (TimeoutError, RoseyError, OSError) as exc:
            logger.warning("host %s did not say which commands of %s it holds: %s", host, plugin, exc)
            return None
        held = reply.data.get("held")
        return {str(i) for i in held} if reply.data.get("ok") and isinstance(held, list) else None
