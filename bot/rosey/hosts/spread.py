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
- **A replica that dies on a host.** Its host's crash event names the commands its plugin code
  held; the ones NATS had handed it but it never read are found by the router's barrier
  (services/replica_barrier.py), which for a plugin on hosts asks each connected carrier:
  :class:`HostBarrierService` answers ``rosey.hosts.<host>.control.barrier`` by asking each of
  its own replicas, by number, on its own server.
- **A lost host.** A host killed with its plugins sends no crash event. When the registry marks
  it lost, the hub ends at once, with the crash reply, each of the plugin's commands in flight
  that no surviving carrier (nor the hub's own processes) holds: the same barrier, through the
  survivors. Its other commands carry on: NATS stopped giving the lost host commands the moment
  its leaf connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from bot.rosey.broker.leaf import host_control_subject
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import RoseyError
from bot.rosey.plugins.barrier import candidates_of
from bot.rosey.services.base import RequestService
from bot.rosey.services.replica_barrier import (
    BARRIER_TIMEOUT,
    HOST_BARRIER_ACTION,
    BarrierVerdict,
    ask_replica,
)
from bot.rosey.supervision.lifecycle import LifecycleEvent
from bot.rosey.supervision.status import PluginState

__all__ = [
    "HostBarrierService",
    "LossHandler",
    "replica_numbers",
    "spread_inbox_prefix",
]

logger = logging.getLogger(__name__)

SOURCE = "rosey-hosts"


def spread_inbox_prefix(plugin: str) -> str:
    """Where the hub's commands to a spread plugin get their answers (every carrier may answer)."""
    return f"_INBOX.rosey_spread_{plugin}"


def replica_numbers(plugins: Mapping[str, Any], plugin: str) -> list[int]:
    """The replica numbers of ``plugin``'s processes among a supervisor's ``plugins`` (keys ``p``,
    ``p#2``...; each process of a plugin on a host has one, see ``cli/host.py``)."""
    numbers = set()
    for key, managed in plugins.items():
        replica = getattr(getattr(managed, "spec", None), "replica", None)
        if key.split("#")[0] == plugin and isinstance(replica, int):
            numbers.add(replica)
    return sorted(numbers)


class HostBarrierService:
    """A host's part in the hub's barrier (services/replica_barrier.py): asked which of a plugin's
    commands its processes hold, it asks each of its replicas of that plugin by number, on this
    host's server, once the replica took everything the hub sent it before the question."""

    def __init__(self, bus: EventBus, host: str, plugins: Callable[[], Mapping[str, Any]]) -> None:
        self.bus = bus
        self.plugins = plugins
        self._service = RequestService(
            bus, {host_control_subject(host, HOST_BARRIER_ACTION): self._barrier}, source=SOURCE
        )

    async def start(self) -> None:
        await self._service.start()

    async def stop(self) -> None:
        await self._service.stop()

    async def _barrier(self, request: Mapping[str, Any]) -> dict[str, Any]:
        name = request.get("name")
        if not isinstance(name, str):
            return {"held": [], "complete": False}
        ids = tuple(candidates_of(dict(request)))
        answers = await asyncio.gather(
            *(
                ask_replica(self.bus, name, number, ids, source=SOURCE, timeout=BARRIER_TIMEOUT)
                for number in replica_numbers(self.plugins(), name)
            )
        )
        held = frozenset().union(*(answer.held for answer in answers))
        return {
            "held": sorted(held),
            "complete": all(answer.decisive for answer in answers),
            "idempotent": any(answer.idempotent for answer in answers),
        }


class LossHandler:
    """The hub's reaction to a lost host: end the commands that were on it, at once."""

    def __init__(
        self,
        *,
        core: EventBus,
        plugins_of: Callable[[str], Iterable[str]],
        in_flight: Callable[[str, float], set[str]],
        verdict: Callable[[str, tuple[str, ...]], Awaitable[BarrierVerdict]],
    ) -> None:
        self.core = core
        self.plugins_of = plugins_of
        self.in_flight = in_flight
        #: The router's barrier through the plugin's surviving processes (the lost host is no
        #: longer connected, so it is not asked): which of the commands no one holds.
        self.verdict = verdict
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
        # Every command in flight now was written before the barrier that follows: one that a
        # survivor received but had not read yet is found held by it, not failed.
        now = time.monotonic()
        for plugin in self.plugins_of(host):
            ids = self.in_flight(plugin, now)
            if not ids:
                continue
            verdict = await self.verdict(plugin, tuple(sorted(ids)))
            if verdict.undecided:
                logger.warning(
                    "host %s lost: %s did not say which commands of %s it holds; %d command(s) keep "
                    "their own answer (or timeout)",
                    host,
                    ", ".join(verdict.silent),
                    plugin,
                    len(verdict.undecided),
                )
            if not verdict.lost:
                continue
            logger.warning(
                "host %s lost: ending %d command(s) of plugin %s that were on it",
                host,
                len(verdict.lost),
                plugin,
            )
            crash = LifecycleEvent(
                plugin=plugin,
                state=PluginState.CRASHED,
                previous=PluginState.RUNNING,
                reason=f"its host '{host}' became unreachable",
                in_flight=verdict.lost,
                # A survivor's replicas said the plugin is idempotent: the router sends them again.
                idempotent=verdict.idempotent,
            )
            with contextlib.suppress(RoseyError, OSError):
                await self.core.publish_event(
                    Event(subject=Subjects.lifecycle(plugin, "crashed"), data=crash.to_dict(), source=SOURCE)
                )
