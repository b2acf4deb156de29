"""issue 16 (s-inflight): the commands a dead replica had been handed but never read.

A dead replica's ledger names the commands its plugin code took (the supervisor's ``crashed``
event carries them, and the router fails or re-sends those at once). Core NATS has no delivery
acknowledgement, so a command the server handed to the replica in the instant it died (in its
socket, or read by nats-py but not yet by the SDK) is in no ledger, and used to meet the command
timeout.

The router's barrier finds them without any cost per command: after the crash, it sends one
request to each replica's own barrier subject (plugins/barrier.py), on the connection that sent
the commands. NATS delivers the messages of one connection to another in the order they were
sent, so each live replica reads every command sent to it before the barrier before the barrier
itself, and it answers once its SDK has recorded them. A command that was in flight before the
barrier, and that no live replica holds, was on the dead one (or was lost by NATS): it gets the
crash reply now (or is sent again, once, for an idempotent plugin).

Every replica number is asked (``1..MAX_REPLICAS``): the router does not know how many a plugin
has, and a number nobody serves answers "no responders" at once. A replica that does not answer
in full within :data:`BARRIER_TIMEOUT` (hung, stopped, its handler held by back-pressure) decides
nothing: the commands no answering replica holds are then left to the command timeout, as
before, rather than failed while that replica may still answer them.

Plugins on other machines (``rosey host``): a replica's barrier subject does not cross a leaf
connection (it is in no host's ceiling), and the same replica number may run on several hosts.
So the hub asks each connected host carrying the plugin instead
(``rosey.hosts.<host>.control.barrier``, on the same connection that sent the commands), and the
host asks its own replicas, each by its number, as the router does here (hosts/spread.py). Order
still holds: the host's server queued every command for a replica before it handed the host the
request, so the host's barrier reaches the replica after them. Where the plugin also runs on the
hub (``[hub] also_runs``), its numbers are asked here too. :class:`BarrierScope` says which.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.rosey.broker.leaf import host_control_subject
from bot.rosey.core.event_bus import EventBus
from bot.rosey.errors import NoResponders, RoseyError
from bot.rosey.plugins.barrier import barrier_subject
from bot.rosey.supervision.spec import MAX_REPLICAS

__all__ = [
    "BARRIER_TIMEOUT",
    "HOST_BARRIER_ACTION",
    "HOST_BARRIER_TIMEOUT",
    "BarrierAnswer",
    "BarrierScope",
    "BarrierVerdict",
    "ReplicaBarrier",
    "ask_host",
    "ask_replica",
]

logger = logging.getLogger(__name__)

#: How long a live replica has to answer; its commands meanwhile wait as they would anyway.
BARRIER_TIMEOUT = 2.0
#: The hub's request to a host: ``rosey.hosts.<host>.control.barrier``.
HOST_BARRIER_ACTION = "barrier"
#: How long a host has: its own replicas' barrier, and the way there and back over the leaf.
HOST_BARRIER_TIMEOUT = BARRIER_TIMEOUT + 1.0


@dataclass(frozen=True, kw_only=True)
class BarrierVerdict:
    """What one barrier found among the commands in flight when a replica of ``plugin`` died."""

    plugin: str
    replica: int
    #: On the dead replica (no live one holds them): the crash reply, or one re-send.
    lost: tuple[str, ...]
    #: Not held by any replica that answered, but some replica did not answer in full: left alone.
    undecided: tuple[str, ...]
    #: Who did not answer in full: ``replica 2``, ``host b``.
    silent: tuple[str, ...]
    #: A live process said its plugin is idempotent: the lost commands may be sent again (the hub
    #: learns it here for a lost host's commands; a replica's own crash event says it too).
    idempotent: bool = False

    def __post_init__(self) -> None:
        if set(self.lost) & set(self.undecided):
            raise ValueError("a command cannot be both lost and undecided")


@dataclass(frozen=True, kw_only=True)
class BarrierAnswer:
    """One replica's (or one host's, for all its replicas) answer to a barrier."""

    who: str  # "replica 2", "host b"
    held: frozenset[str]
    decisive: bool  # answered in full, or nobody serves that number
    idempotent: bool = False  # the plugin says its commands may run twice


@dataclass(frozen=True, kw_only=True)
class BarrierScope:
    """Where a plugin's processes are: on this machine's server (``here``: its replica numbers are
    asked directly) and on which connected hosts (each asked for its own replicas)."""

    here: bool = True
    hosts: tuple[str, ...] = ()


async def ask_replica(
    bus: EventBus, plugin: str, number: int, candidates: tuple[str, ...], *, source: str, timeout: float
) -> BarrierAnswer:
    """Replica ``number`` of ``plugin``: which of ``candidates`` it holds (plugins/barrier.py)."""
    who = f"replica {number}"
    try:
        reply = await bus.request(
            barrier_subject(plugin, number),
            {"ids": list(candidates)},
            source,
            timeout=timeout,
            event_type="barrier",
        )
    except RoseyError as exc:
        # NoResponders: nobody serves that number, so nobody there holds anything. Anything else
        # (a timeout, the bus down, a malformed answer): that number decides nothing.
        return BarrierAnswer(who=who, held=frozenset(), decisive=isinstance(exc, NoResponders))
    return BarrierAnswer(
        who=who,
        held=_held(reply.data),
        decisive=reply.data.get("complete") is True,
        idempotent=reply.data.get("idempotent") is True,
    )


async def ask_host(
    bus: EventBus,
    host: str,
    plugin: str,
    candidates: tuple[str, ...],
    *,
    source: str,
    timeout: float = HOST_BARRIER_TIMEOUT,
) -> BarrierAnswer:
    """Host ``host``: which of ``candidates`` its replicas of ``plugin`` hold (hosts/spread.py).
    ``bus`` must be the connection that sent the commands. A host that does not answer, or whose
    replicas did not all answer in full, decides nothing."""
    who = f"host {host}"
    try:
        reply = await bus.request(
            host_control_subject(host, HOST_BARRIER_ACTION),
            {"name": plugin, "ids": list(candidates)},
            source,
            timeout=timeout,
            event_type="barrier",
        )
    except RoseyError:  # NoResponders too: a connected host always serves it
        return BarrierAnswer(who=who, held=frozenset(), decisive=False)
    complete = reply.data.get("ok") is True and reply.data.get("complete") is True
    return BarrierAnswer(
        who=who, held=_held(reply.data), decisive=complete, idempotent=reply.data.get("idempotent") is True
    )


def _held(data: dict[str, object]) -> frozenset[str]:
    raw = data.get("held")
    return frozenset(cid for cid in raw if isinstance(cid, str)) if isinstance(raw, list) else frozenset()


class ReplicaBarrier:
    """The router's side: one barrier per replica crash, in a task of its own. ``scope(plugin)``
    says where the plugin's processes are (default: all on this machine's server)."""

    def __init__(
        self,
        bus_for: Callable[[str], EventBus],
        *,
        source: str,
        timeout: float = BARRIER_TIMEOUT,
        host_timeout: float = HOST_BARRIER_TIMEOUT,
        scope: Callable[[str], BarrierScope] | None = None,
    ) -> None:
        if not timeout > 0 or not host_timeout > 0:
            raise ValueError(f"timeouts must be positive, got {timeout}, {host_timeout}")
        self._bus_for = bus_for
        self._source = source
        self._timeout = timeout
        self._host_timeout = host_timeout
        self._scope = scope or (lambda _plugin: BarrierScope())
        self._tasks: set[asyncio.Task[None]] = set()

    def after_crash(
        self,
        plugin: str,
        replica: int,
        candidates: Sequence[str],
        settle: Callable[[BarrierVerdict], None],
    ) -> None:
        """Find which of ``candidates`` (commands in flight to ``plugin``, sent before now, not in
        the dead replica's ledger) were on replica ``replica``, and hand the verdict to ``settle``."""
        if not candidates:
            return
        task = asyncio.create_task(self._run(plugin, replica, tuple(candidates), settle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(
        self, plugin: str, replica: int, candidates: tuple[str, ...], settle: Callable[[BarrierVerdict], None]
    ) -> None:
        try:
            verdict = await self.verdict(plugin, replica, candidates)
        except Exception:  # a failed barrier leaves the commands to their timeout, as before
            logger.exception("plugin %s: the barrier after replica %d died failed", plugin, replica)
            return
        if verdict.lost:
            logger.info(
                "plugin %s: replica %d died with %d command(s) it had not read yet",
                plugin,
                replica,
                len(verdict.lost),
                extra={"plugin": plugin},
            )
        if verdict.undecided:
            logger.warning(
                "plugin %s: %s did not answer the barrier after replica %d died; "
                "%d command(s) are left to the command timeout",
                plugin,
                ", ".join(map(str, verdict.silent)),
                replica,
                len(verdict.undecided),
                extra={"plugin": plugin},
            )
        settle(verdict)

    async def verdict(self, plugin: str, replica: int, candidates: tuple[str, ...]) -> BarrierVerdict:
        """Ask every replica number here and every host in the plugin's scope; see the module's
        docstring. ``replica`` is the dead one's number (0: a lost host's), for the verdict."""
        bus = self._bus_for(plugin)
        scope = self._scope(plugin)
        # Every candidate's command was written to this connection before the crash event was
        # handled (the router writes a command before it awaits anything), so each barrier follows.
        source, timeout = self._source, self._timeout
        asks = [
            *(
                ask_replica(bus, plugin, number, candidates, source=source, timeout=timeout)
                for number in (range(1, MAX_REPLICAS + 1) if scope.here else ())
            ),
            *(
                ask_host(bus, host, plugin, candidates, source=source, timeout=self._host_timeout)
                for host in scope.hosts
            ),
        ]
        answers = await asyncio.gather(*asks)
        held = frozenset().union(*(answer.held for answer in answers))
        silent = tuple(answer.who for answer in answers if not answer.decisive)
        unheld = tuple(cid for cid in candidates if cid not in held)
        idempotent = any(answer.idempotent for answer in answers)
        if silent:
            return BarrierVerdict(
                plugin=plugin,
                replica=replica,
                lost=(),
                undecided=unheld,
                silent=silent,
                idempotent=idempotent,
            )
        return BarrierVerdict(
            plugin=plugin, replica=replica, lost=unheld, undecided=(), silent=(), idempotent=idempotent
        )
