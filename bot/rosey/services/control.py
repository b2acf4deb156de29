"""The control service of a running ``rosey run``: what the CLI talks to over NATS.

Requests on ``rosey.supervisor.<action>`` (status, start, stop, restart, logs, follow) get one
reply event: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Only the core identity
may publish there: plugins have no grant for ``rosey.supervisor.>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bot.rosey.core.event_bus import EventBus, Subscription
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import BusNotConnected, RoseyError
from bot.rosey.plugins.process.output import OutputLine

if TYPE_CHECKING:
    from bot.rosey.app import RoseyApp

__all__ = ["LOG_SUBJECT_PREFIX", "ControlService"]

logger = logging.getLogger(__name__)

LOG_SUBJECT_PREFIX = "rosey.logs"  # rosey.logs.<plugin>: live output, while someone follows
FOLLOW_LEASE_SECONDS = 15.0

Action = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlService:
    def __init__(self, bus: EventBus, app: RoseyApp) -> None:
        self.bus = bus
        self.app = app
        self._subscriptions: list[Subscription] = []
        self._followers: dict[str, float] = {}  # plugin -> lease expiry (monotonic)
        self._hooked = False
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        actions: dict[str, Action] = {
            "status": self._status,
            "start": self._start,
            "stop": self._stop,
            "restart": self._restart,
            "logs": self._logs,
            "follow": self._follow,
        }
        for action, handler in actions.items():
            self._subscriptions.append(
                await self.bus.subscribe(Subjects.supervisor(action), self._wrap(handler))
            )
        await self.bus.flush()

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions.clear()

    def _wrap(self, handler: Action) -> Callable[[Event], Awaitable[None]]:
        async def serve(event: Event) -> None:
            if not event.reply:
                return
            try:
                data = {"ok": True, **(await handler(event.data))}
            except RoseyError as exc:
                data = {"ok": False, "error": str(exc)}
            except (KeyError, TypeError, ValueError) as exc:
                data = {"ok": False, "error": f"bad request: {exc}"}
            with contextlib.suppress(BusNotConnected):
                await self.bus.respond(event, Event(subject=event.reply, data=data, source="rosey-control"))

        return serve

    # ------------------------------------------------------------------ actions

    async def _status(self, _: dict[str, Any]) -> dict[str, Any]:
        return self.app.status().to_dict()

    async def _start(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.app.supervisor is not None
        await self.app.supervisor.start(str(request["name"]))
        return {"plugin": self.app.supervisor.get(str(request["name"])).status(history=0).to_dict()}

    async def _stop(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.app.supervisor is not None
        await self.app.supervisor.stop(str(request["name"]))
        return {"plugin": self.app.supervisor.get(str(request["name"])).status(history=0).to_dict()}

    async def _restart(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.app.supervisor is not None
        await self.app.supervisor.restart(str(request["name"]))
        return {"plugin": self.app.supervisor.get(str(request["name"])).status(history=0).to_dict()}

    async def _logs(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.app.supervisor is not None
        plugin = self.app.supervisor.get(str(request["name"]))
        count = max(1, min(int(request.get("lines", 50)), 10_000))
        if plugin.process is None:
            return {"lines": []}
        lines = list(plugin.process.output.lines)[-count:]
        return {"lines": [_line_dict(line) for line in lines]}

    async def _follow(self, request: dict[str, Any]) -> dict[str, Any]:
        """Lease live output of one plugin on ``rosey.logs.<name>`` for a few seconds.

        Lines are only published while somebody holds a lease, so an unwatched plugin that
        floods its stdout costs no NATS traffic.
        """
        assert self.app.supervisor is not None
        name = str(request["name"])
        self.app.supervisor.get(name)  # raises PluginNotFound for a bad name
        self._followers[name] = time.monotonic() + FOLLOW_LEASE_SECONDS
        if not self._hooked:
            self._hooked = True
            self.app.supervisor.add_output_listener(self._forward)
        return {"subject": f"{LOG_SUBJECT_PREFIX}.{name}", "lease_seconds": FOLLOW_LEASE_SECONDS}

    def _forward(self, name: str, line: OutputLine) -> None:
        if self._followers.get(name, 0.0) < time.monotonic():
            return
        event = Event(subject=f"{LOG_SUBJECT_PREFIX}.{name}", data=_line_dict(line), source="rosey-control")
        task = asyncio.get_running_loop().create_task(self._publish_quietly(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish_quietly(self, event: Event) -> None:
        with contextlib.suppress(BusNotConnected, OSError):
            await self.bus.publish_event(event)


def _line_dict(line: OutputLine) -> dict[str, Any]:
    return {"t": line.timestamp, "stream": line.stream, "text": line.text}
