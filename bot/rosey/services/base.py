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

from bot.rosey.broker.identities import plugin_user
from bot.rosey.core.event_bus import EventBus, Subscription
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import BusNotConnected, RoseyError, ServiceError

__all__ = [
    "PluginRequestHandler",
    "PluginRequestService",
    "RequestHandler",
    "RequestService",
    "Service",
    "own_inbox",
]

logger = logging.getLogger(__name__)

RequestHandler = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]
#: A handler of a plugin's request: (the plugin who asks, the request's data) -> the reply.
PluginRequestHandler = Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]


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
            await self._answer(event, lambda: handler(event.data))

        return serve

    async def _answer(self, event: Event, work: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Run ``work`` and reply with its result, or with the error that refused the request."""
        if not event.reply:
            return  # a publish, not a request: nobody would read the answer
        try:
            data = {"ok": True, **(await work())}
        except ServiceError as exc:  # typed: the SDK raises the same class in the plugin
            data = {"ok": False, **exc.to_wire()}
        except RoseyError as exc:
            data = {"ok": False, "error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            logger.debug("bad request on %s: %r", event.subject, exc)
            data = {"ok": False, "error": f"bad request: {exc}"}
        with contextlib.suppress(BusNotConnected):
            await self.bus.respond(event, Event(subject=event.reply, data=data, source=self.source))


def own_inbox(plugin: str, reply: str) -> bool:
    """Whether ``reply`` may receive an answer for ``plugin``: an inbox, and never another identity's.

    The reply subject is the plugin's choice, not checked by NATS: without this, a plugin could
    have the service (the unrestricted core identity) publish a reply, holding a value the
    plugin stored, on any subject (``rosey.chat.<platform>.send``, another plugin's inbox...).
    """
    parts = reply.split(".")
    if len(parts) < 3 or parts[0] != "_INBOX":
        return False
    owner = parts[1]
    if owner.startswith(("plugin_", "adapter_", "rosey_")):  # an identity's (the core's included)
        return owner == plugin_user(plugin)
    # A random inbox: a server without per-plugin identities (the harness, an open test server),
    # where every connection may read every subject anyway.
    return True


class PluginRequestService(RequestService):
    """A service plugins call in their own name: ``rosey.services.<service>.<plugin>.<op>``.

    NATS lets a plugin publish there only with its own name (see ``plugin_permissions``), so the
    plugin token of the subject *is* who asks: ``handlers[op](plugin, data)`` trusts it. Requests
    for an unknown ``op`` get an error reply. The answer goes only into the asker's own inbox
    (:func:`own_inbox`): NATS does not check a request's reply subject, and a service answers as
    the core, which may publish anywhere.
    """

    def __init__(
        self, bus: EventBus, service: str, handlers: Mapping[str, PluginRequestHandler], *, source: str
    ) -> None:
        super().__init__(bus, {Subjects.service_requests(service): self._dispatch}, source=source)
        self.service = service
        self._ops = dict(handlers)

    def _serve(self, handler: RequestHandler) -> Callable[[Event], Awaitable[None]]:
        async def serve(event: Event) -> None:
            parsed = Subjects.service_plugin(event.subject)
            if parsed is None:
                return
            plugin, op = parsed
            if not event.reply:
                return
            if not own_inbox(plugin, event.reply):
                logger.warning(
                    "%s: dropped a request of %s with reply subject %r", self.service, plugin, event.reply
                )
                return
            op_handler = self._ops.get(op)
            if op_handler is None:
                known = ", ".join(sorted(self._ops))
                message = f"the {self.service} service has no operation {op!r} (known: {known})"
                await self._answer(event, lambda: _refuse(message))
            else:
                await self._answer(event, lambda: op_handler(plugin, event.data))

        return serve

    async def _dispatch(self, data: Mapping[str, Any]) -> dict[str, Any]:  # replaced by _serve
        raise NotImplementedError


async def _refuse(message: str) -> dict[str, Any]:
    raise ValueError(message)
