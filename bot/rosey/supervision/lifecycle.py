"""Lifecycle events: every state change of a supervised plugin, as published on the bus.

Subject: ``rosey.lifecycle.<plugin>.<state>`` (``Subjects.lifecycle``), payload
:meth:`LifecycleEvent.to_dict`. Beside them, ``rosey.lifecycle.<plugin>.stats`` carries the
watchdog's periodic :class:`~bot.rosey.supervision.status.PluginStatus` (not a change), so a
subscriber to ``rosey.lifecycle.<plugin>.*`` tells the two apart by the last token.

The subjects are outside the plugins' own namespace (``rosey.plugins.<name>.>``, where a plugin
may publish), so only the core can send them: the router trusts a ``crashed`` event enough to
fail the commands in flight to that plugin.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import RoseyError

# The tolerant readers of the status schema: one definition of "a missing or mistyped key is None".
from bot.rosey.supervision.status import PluginState, _float, _int, _str

__all__ = ["EVENT_BACKLOG", "LifecycleEvent", "LifecyclePublisher"]

logger = logging.getLogger(__name__)

#: Events waiting for the bus. Past this many (the bus is stuck) the oldest are dropped: the
#: lifecycle must never wait for, nor grow without bound behind, a slow bus.
EVENT_BACKLOG = 1000


def _state(value: object) -> PluginState | None:
    try:
        return PluginState(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _ids(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(item for item in value if isinstance(item, str))


@dataclass(frozen=True, kw_only=True)
class LifecycleEvent:
    """``plugin`` went from ``previous`` to ``state``.

    ``reason`` says why, when there is a why: the exit of a crashed or stopped run, the failure
    of a failed plugin, the exit a backoff follows. ``returncode`` is set for a run that ended
    with a process exit, ``delay`` for a backoff (seconds until the next start), ``pid`` is the
    process the change is about (the one that exited, for ``crashed``).
    """

    plugin: str
    state: PluginState
    previous: PluginState | None = None
    reason: str | None = None
    last_exit: str | None = None
    returncode: int | None = None
    delay: float | None = None
    restarts: int = 0
    pid: int | None = None
    timestamp: float = field(default_factory=time.time)
    #: issue 16: the replica the change is about (None: the plugin's only process); on ``crashed``,
    #: the correlation ids of the commands it held, and whether they may be re-sent.
    replica: int | None = None
    in_flight: tuple[str, ...] | None = None
    idempotent: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", PluginState(self.state))
        if self.previous is not None:
            object.__setattr__(self, "previous", PluginState(self.previous))

    def to_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "state": self.state.value,
            "previous": None if self.previous is None else self.previous.value,
            "reason": self.reason,
            "last_exit": self.last_exit,
            "returncode": self.returncode,
            "delay": self.delay,
            "restarts": self.restarts,
            "pid": self.pid,
            "timestamp": self.timestamp,
            "replica": self.replica,
            "in_flight": None if self.in_flight is None else list(self.in_flight),
            "idempotent": self.idempotent,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, plugin: str = "", state: str = "") -> LifecycleEvent:
        """Read an event back. ``plugin``/``state`` (e.g. from the subject) stand in for missing or
        unknown values; without a known state either way, ValueError."""
        return cls(
            plugin=_str(data.get("plugin")) or plugin,
            state=_state(data.get("state")) or PluginState(state),
            previous=_state(data.get("previous")),
            reason=_str(data.get("reason")),
            last_exit=_str(data.get("last_exit")),
            returncode=_int(data.get("returncode")),
            delay=_float(data.get("delay")),
            restarts=_int(data.get("restarts")) or 0,
            pid=_int(data.get("pid")),
            timestamp=_float(data.get("timestamp")) or 0.0,
            replica=_int(data.get("replica")),
            in_flight=_ids(data.get("in_flight")),
            idempotent=data.get("idempotent") is True,
        )


class LifecyclePublisher:
    """Publishes lifecycle events in order without ever making the caller wait.

    :meth:`emit` queues and returns; one task at a time drains the queue onto the bus, so the
    events of a plugin reach subscribers in the order they happened. A bus that is down loses
    the events (logged at debug level), never the caller's progress.
    """

    def __init__(self, bus: EventBus | None, *, source: str) -> None:
        self.bus = bus
        self.source = source
        self._queue: deque[LifecycleEvent] = deque(maxlen=EVENT_BACKLOG)
        self._task: asyncio.Task[None] | None = None

    def emit(self, event: LifecycleEvent) -> None:
        """Queue ``event`` for the bus (a no-op without one); call from the event loop."""
        if self.bus is None:
            return
        self._queue.append(event)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="rosey-lifecycle-events")

    async def _drain(self) -> None:
        while self._queue and self.bus is not None:
            event = self._queue.popleft()
            subject = Subjects.lifecycle(event.plugin, event.state.value)
            try:
                await self.bus.publish(subject, event.to_dict(), source=self.source)
            except (RoseyError, OSError) as exc:  # the bus is down: the event is lost, not the plugin
                logger.debug("lifecycle event %s not published: %s", subject, exc)
            except Exception:
                logger.exception("lifecycle event %s not published", subject)

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait until the queued events are handed to the bus; drop them after ``timeout``."""
        task = self._task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            logger.warning("dropping %d lifecycle event(s): the bus did not take them", len(self._queue))
            self._queue.clear()
            task.cancel()
            await asyncio.wait({task})  # unlike awaiting it, never mistakes its cancel for ours
