"""A :class:`~bot.rosey.services.base.PluginRequestService` for services that wait on something.

Each request is answered in its own task (a storage request waits on JetStream, an HTTP request
on a remote server: one plugin's 100 requests in flight must not queue behind each other), at
most ``max_in_flight`` per plugin (more are refused at once: no queue to flood), and only into
the asker's own inbox (:func:`own_inbox`).

The reply subject of a request is chosen by the plugin and NATS does not check it; the service
answers as the core identity, which may publish anywhere. Without the inbox check a plugin could
have a service publish its answer (holding data the plugin chose) on a chat platform's subject,
another plugin's inbox or command subject. Every plugin service should answer through this
class, or make the same check.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import ServiceError
from bot.rosey.services.base import PluginRequestHandler, PluginRequestService, RequestHandler, own_inbox

__all__ = ["ConcurrentPluginRequestService", "own_inbox"]

logger = logging.getLogger(__name__)


async def _refuse(service: str, message: str) -> dict[str, Any]:
    raise ServiceError(message, service=service)


class ConcurrentPluginRequestService(PluginRequestService):
    """:class:`PluginRequestService` answering each request in its own task, at most
    ``max_in_flight`` per plugin at once, and only into the asker's own inbox."""

    def __init__(
        self,
        bus: EventBus,
        service: str,
        handlers: Mapping[str, PluginRequestHandler],
        *,
        source: str,
        max_in_flight: int = 256,
    ) -> None:
        super().__init__(bus, service, handlers, source=source)
        self.max_in_flight = max_in_flight
        self._in_flight: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    def _serve(self, handler: RequestHandler) -> Callable[[Event], Awaitable[None]]:
        inner = super()._serve(handler)

        async def serve(event: Event) -> None:
            parsed = Subjects.service_plugin(event.subject)
            if parsed is None or not event.reply:
                return
            plugin = parsed[0]
            if not own_inbox(plugin, event.reply):
                return  # refused (and logged) by the base class; not worth a task
            if self._in_flight[plugin] >= self.max_in_flight:
                message = (
                    f"too many {self.service} requests in flight (at most {self.max_in_flight} per plugin)"
                )
                await self._answer(event, lambda: _refuse(self.service, message))
                return
            self._in_flight[plugin] += 1
            task: asyncio.Task[None] = asyncio.ensure_future(inner(event))
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._done(plugin, t))

        return serve

    def _done(self, plugin: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight[plugin] -= 1
        if self._in_flight[plugin] <= 0:
            del self._in_flight[plugin]

    async def stop(self) -> None:
        await super().stop()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
