"""A host's side of the one view from the hub: its heartbeat, every ``interval`` seconds.

The heartbeat goes on the host's own NATS server and crosses to the hub over the leaf
connection (``rosey.hosts.<host>.heartbeat`` is in the host's ceiling). While the hub is
unreachable the publishes stay local and cost nothing; the hub sees the host again with the
first heartbeat after the leaf connection is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable

from bot.rosey.broker.leaf import host_heartbeat_subject
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.errors import RoseyError
from bot.rosey.hosts.wire import Heartbeat
from bot.rosey.supervision.status import PluginStatus

__all__ = ["HeartbeatSender"]

logger = logging.getLogger(__name__)

SOURCE = "rosey-host"


class HeartbeatSender:
    """Publishes ``rows()`` (the host's plugins' status, without history) every ``interval`` s."""

    def __init__(
        self, bus: EventBus, host: str, rows: Callable[[], Iterable[PluginStatus]], *, interval: float
    ) -> None:
        self.bus = bus
        self.host = host
        self.rows = rows
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def beat(self) -> None:
        beat = Heartbeat(host=self.host, pid=os.getpid(), plugins=tuple(self.rows()))
        event = Event(subject=host_heartbeat_subject(self.host), data=beat.to_wire(), source=SOURCE)
        await self.bus.publish_event(event)

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except (RoseyError, OSError) as exc:  # the local server is restarting: next beat
                logger.debug("heartbeat not sent: %s", exc)
            await asyncio.sleep(self.interval)
