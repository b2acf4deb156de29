"""The control service of a running ``rosey run``: what the CLI talks to over NATS.

Requests on ``rosey.supervisor.<action>`` (status, start, stop, restart, logs, follow) get one
reply each, in the shape of every Rosey service (:mod:`bot.rosey.services.base`):
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Only the core identity may publish
there: plugins have no grant for ``rosey.supervisor.>``.

It is handed the supervisor and a function that reports the whole status, never the app that
composes them, so nothing here can reach past what it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import BusNotConnected, RoseyError
from bot.rosey.plugins.process.output import OutputLine
from bot.rosey.services.base import RequestService
from bot.rosey.supervision.status import RoseyStatus
from bot.rosey.supervision.supervisor import Supervisor

__all__ = ["FOLLOW_LEASE_SECONDS", "LOG_SUBJECT_PREFIX", "ControlService"]

logger = logging.getLogger(__name__)

LOG_SUBJECT_PREFIX = "rosey.logs"  # rosey.logs.<plugin>: live output, while someone follows
FOLLOW_LEASE_SECONDS = 15.0
SOURCE = "rosey-control"

StatusReport = Callable[[], RoseyStatus]
#: s-host: the hub's forwarding of an action on a remote plugin to its host: ``(action, request)``
#: -> the host's answer (awaitable), or None when the plugin is not on another host.
RemoteAction = Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]] | None]


class ControlService:
    """Serves the CLI: the status (from ``status``), lifecycle actions and logs of ``supervisor``."""

    def __init__(
        self,
        bus: EventBus,
        supervisor: Supervisor,
        status: StatusReport,
        *,
        shutdown: Callable[[], None] | None = None,
        subject_prefix: str | None = None,
        remote: RemoteAction | None = None,
        reload_config: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        status_without_history: StatusReport | None = None,
    ) -> None:
        self.bus = bus
        self.supervisor = supervisor
        self._status_report = status
        # s-thousand: built without the history rather than built with it and then stripped
        self._status_light = status_without_history
        self._shutdown = shutdown  # asks the running bot to stop, as Ctrl-C does
        self._reload_config = reload_config  # issue 16: `rosey reload` with no name
        self._followers: dict[str, float] = {}  # plugin -> lease expiry (monotonic)
        self._hooked = False
        self._pending: set[asyncio.Task[None]] = set()
        handlers = {
            "status": self._status,
            "start": self._start,
            "stop": self._stop,
            "restart": self._restart,
            "reload": self._reload,  # issue 16
            "logs": self._logs,
            "follow": self._follow,
            "shutdown": self._shutdown_request,
        }
        # --- s-host: a host serves its hub on rosey.hosts.<host>.control.<action> (never shutdown);
        # the hub forwards actions on a remote plugin to that plugin's host.
        self._remote = remote
        if subject_prefix is not None:
            del handlers["shutdown"]
        subject = (lambda a: f"{subject_prefix}.{a}") if subject_prefix is not None else Subjects.supervisor
        self._service = RequestService(
            bus,
            {subject(action): self._routed(action, handler) for action, handler in handlers.items()},
            source=SOURCE,
        )

    def _routed(
        self, action: str, handler: Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]
    ) -> Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]:
        if self._remote is None or action in ("status", "shutdown"):
            return handler
        remote = self._remote

        async def serve(request: Mapping[str, Any]) -> dict[str, Any]:
            forwarded = remote(action, request)
            return await (forwarded if forwarded is not None else handler(request))

        return serve

    # --- end s-host

    async def start(self) -> None:
        await self._service.start()

    async def stop(self) -> None:
        await self._service.stop()

    # ------------------------------------------------------------------ actions

    async def _status(self, request: Mapping[str, Any]) -> dict[str, Any]:
        if request.get("history") is False:  # rosey top: no plots, so no history to encode
            light = self._status_light
            status = light() if light is not None else self._status_report().without_history()
        else:
            status = self._status_report()
        return status.to_dict()

    async def _start(self, request: Mapping[str, Any]) -> dict[str, Any]:
        name = str(request["name"])
        await self.supervisor.start(name)
        return {"plugin": self.supervisor.get(name).status(history=0).to_dict()}

    async def _stop(self, request: Mapping[str, Any]) -> dict[str, Any]:
        name = str(request["name"])
        await self.supervisor.stop(name)
        return {"plugin": self.supervisor.get(name).status(history=0).to_dict()}

    async def _restart(self, request: Mapping[str, Any]) -> dict[str, Any]:
        name = str(request["name"])
        await self.supervisor.restart(name)
        return {"plugin": self.supervisor.get(name).status(history=0).to_dict()}

    async def _reload(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """issue 16: the new version beside the old (see Supervisor.reload); with no name, the
        configuration (see ``reload_config``, given by the app)."""
        name = request.get("name")
        if name is None:
            if self._reload_config is None:
                raise RoseyError(
                    "this Rosey cannot re-read its configuration (it was not started by `rosey run`)"
                )
            return {"config": await self._reload_config()}
        await self.supervisor.reload(str(name))
        return {"plugins": [m.status(history=0).to_dict() for m in self.supervisor.members(str(name))]}

    async def _shutdown_request(self, _: Mapping[str, Any]) -> dict[str, Any]:
        """Stop the whole bot, in the same order as Ctrl-C; the reply leaves before the stop begins."""
        if self._shutdown is None:
            raise RoseyError("this Rosey cannot be shut down remotely (it was not started by `rosey run`)")
        asyncio.get_running_loop().call_soon(self._shutdown)
        return {"pid": os.getpid()}

    async def _logs(self, request: Mapping[str, Any]) -> dict[str, Any]:
        plugin = self.supervisor.get(str(request["name"]))
        count = max(1, min(int(request.get("lines", 50)), 10_000))
        if plugin.process is None:
            return {"lines": []}
        lines = list(plugin.process.output.lines)[-count:]
        return {"lines": [_line_dict(line) for line in lines]}

    async def _follow(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Lease live output of one plugin on ``rosey.logs.<name>`` for a few seconds.

        Lines are only published while somebody holds a lease, so an unwatched plugin that
        floods its stdout costs no NATS traffic.
        """
        name = str(request["name"])
        self.supervisor.get(name)  # raises PluginNotFound for a bad name
        self._followers[name] = time.monotonic() + FOLLOW_LEASE_SECONDS
        if not self._hooked:
            self._hooked = True
            self.supervisor.add_output_listener(self._forward)
        return {"subject": f"{LOG_SUBJECT_PREFIX}.{name}", "lease_seconds": FOLLOW_LEASE_SECONDS}

    def _forward(self, name: str, line: OutputLine) -> None:
        if self._followers.get(name, 0.0) < time.monotonic():
            return
        event = Event(subject=f"{LOG_SUBJECT_PREFIX}.{name}", data=_line_dict(line), source=SOURCE)
        task = asyncio.get_running_loop().create_task(self._publish_quietly(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish_quietly(self, event: Event) -> None:
        with contextlib.suppress(BusNotConnected, OSError):
            await self.bus.publish_event(event)


def _line_dict(line: OutputLine) -> dict[str, Any]:
    return {"t": line.timestamp, "stream": line.stream, "text": line.text}
