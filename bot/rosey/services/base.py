"""The one pattern of Rosey's host-side services: requests on the bus, one reply each.

A service owns a few subjects. Each request on one of them gets exactly one reply event:
``{"ok": true, ...the handler's result}`` or ``{"ok": false, "error": "one line"}``. Handlers
are plain ``async def handler(data) -> dict``; they raise a :class:`~bot.rosey.errors.RoseyError`
(or ``KeyError``/``TypeError``/``ValueError`` for a malformed request) to refuse, and the
service turns that into the error reply, so one bad request never breaks a subscription.
Who may send a request is NATS's business (the subject's permissions), not the handler's.

The control service is the first user; the storage, HTTP-gateway and file services follow the
same shape, so a client (the CLI, the SDK) reads every answer the same way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from bot.rosey.core.event_bus import EventBus, Subscription
from bot.rosey.core.events import Event
from bot.rosey.errors import BusNotConnected, RoseyError

__all__ = ["RequestHandler", "RequestService", "Service"]

logger = logging.getLogger(__name__)

RequestHandler = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


class Service(Protocol):
    """Anything ``rosey run`` starts after the bus and stops before it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class RequestService:
    """Serves ``handlers`` (subject -> handler) on ``bus`` until :meth:`stop`."""

    def __init__(self, bus: EventBus, handlers: Mapping[str, RequestHandler], *, source: str) -> None:
        self.bus = bus
        self.source = source
        self._handlers = dict(handlers)
        self._subscriptions: list[Subscription] = []

    async def start(self) -> None:
        """Subscribe to every subject; return once the server has the subscriptions."""
        for subject, handler in self._handlers.items():
            self._subscriptions.append(await self.bus.subscribe(subject, self._serve(handler)))
        await self.bus.flush()

    async def stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.unsubscribe()

    def _serve(self, handler: RequestHandler) -> Callable[[Event], Awaitable[None]]:
        async def serve(event: Event) -> None:
            if not event.reply:
                return  # a publish, not a request: nobody would read the answer
            try:
                data = {"ok": True, **(await handler(event.data))}
            except RoseyError as exc:
                data = {"ok": False, "error": str(exc)}
            except (KeyError, TypeError, ValueError) as exc:
                logger.debug("bad request on %s: %r", event.subject, exc)
                data = {"ok": False, "error": f"bad request: {exc}"}
            with contextlib.suppress(BusNotConnected):
                await self.bus.respond(event, Event(subject=event.reply, data=data, source=self.source))

        return serve
