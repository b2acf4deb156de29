"""A host's side of the one view from the hub: its heartbeat, every ``interval`` seconds.

The heartbeat goes on the host's own NATS server and crosses to the hub over the leaf
connection (``rosey.hosts.<host>.heartbeat`` is in the host's ceiling). While the hub is
unreachable the publishes stay local and cost nothing; the hub sees the host again with the
first heartbeat after the leaf connection is back.

s-remote: with the first beat and every ``commands_every`` beats after it, the plugins' declared
commands (read from their source on this host) go on ``rosey.hosts.<host>.commands`` for the
hub's ``!help``: a message of their own, so that a long list never delays or bloats the heartbeat
the hub judges liveness by, and a hub that restarts learns them within ``commands_every`` beats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping

from bot.rosey.broker.leaf import host_commands_subject, host_heartbeat_subject
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.errors import RoseyError
from bot.rosey.hosts.declared import declared_to_wire
from bot.rosey.hosts.wire import Heartbeat
from bot.rosey.plugins.declared_commands import PluginCommands
from bot.rosey.supervision.status import PluginStatus

__all__ = ["HeartbeatSender"]

logger = logging.getLogger(__name__)

SOURCE = "rosey-host"
#: s-remote: the declared commands are sent with the first heartbeat and every this many after it.
COMMANDS_EVERY = 5


class HeartbeatSender:
    """Publishes ``rows()`` (the host's plugins' status, without history) every ``interval`` s."""

    def __init__(
        self,
        bus: EventBus,
        host: str,
        rows: Callable[[], Iterable[PluginStatus]],
        *,
        interval: float,
        commands: Callable[[], Mapping[str, PluginCommands]] | None = None,  # s-remote
        commands_every: int = COMMANDS_EVERY,
    ) -> None:
        self.bus = bus
        self.host = host
        self.rows = rows
        self.interval = interval
        self.commands = commands
        self.commands_every = max(1, commands_every)
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

    async def send_commands(self) -> None:
        """s-remote: the plugins' declared commands, for the hub's ``!help``."""
        if self.commands is not None:
            event = Event(
                subject=host_commands_subject(self.host),
                data=declared_to_wire(self.commands()),
                source=SOURCE,
            )
            await self.bus.publish_event(event)

    async def _run(self) -> None:
        beats = 0
        while True:
            try:
                await self.beat()
                if beats % self.commands_every == 0:
                    await self.send_commands()
            except (RoseyError, OSError) as exc:  # the local server is restarting: next beat
                logger.debug("heartbeat not sent: %s", exc)
            beats += 1
            await asyncio.sleep(self.interval)
