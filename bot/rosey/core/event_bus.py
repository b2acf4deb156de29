"""EventBus: Rosey's typed view of a NATS connection.

Everything that crosses the bus is an :class:`~bot.rosey.core.events.Event`. Handlers are
``async def handler(event)``; a malformed message is logged and counted, and an exception in a
handler is logged and counted, neither ever stops a subscription. The connection reconnects by
itself when the server goes away and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from bot.rosey.core.events import Event, new_id
from bot.rosey.errors import (
    BusNotConnected,
    InvalidSubject,
    MalformedEvent,
    NoResponders,
    PayloadTooLarge,
    RequestTimeout,
    RoseyError,
)

__all__ = [
    "DEFAULT_NATS_URL",
    "BusStats",
    "EventBus",
    "Handler",
    "Subscription",
    "get_event_bus",
    "initialize_event_bus",
    "redact_url",
    "shutdown_event_bus",
]

logger = logging.getLogger(__name__)

DEFAULT_NATS_URL = "nats://localhost:4222"

Handler = Callable[[Event], Awaitable[None]]
ErrorCallback = Callable[[Exception], Awaitable[None]]


@dataclass
class BusStats:
    """Counters of what went wrong on one connection; read them, never reset them."""

    malformed: int = 0
    handler_errors: int = 0
    permission_violations: int = 0
    reconnects: int = 0
    last_error: str | None = None


# The subscription whose handler is running in the current task, if any.
_delivering: contextvars.ContextVar[Subscription | None] = contextvars.ContextVar("delivering", default=None)


class Subscription:
    """A live subscription; ``await unsubscribe()`` really stops delivery."""

    def __init__(self, subject: str, queue: str | None, on_close: Callable[[Subscription], None]) -> None:
        self.subject = subject
        self.queue = queue
        self._sub: NatsSubscription | None = None
        self._active = True
        self._on_close = on_close
        self._background: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._active

    async def unsubscribe(self) -> None:
        """Stop delivery. Safe from inside this subscription's own handler, and safe twice."""
        if not self._active:
            return
        self._active = False
        self._on_close(self)
        if _delivering.get() is self:
            # nats-py would cancel the task running this very handler; let it finish instead.
            self._background = asyncio.create_task(self._unsubscribe_now())
        else:
            await self._unsubscribe_now()

    async def drain(self) -> None:
        """Stop delivery after the messages the server sent already (issue 16: a replica leaving
        its queue group hands no command over to nobody). Safe twice."""
        if not self._active:
            return
        try:
            if self._sub is not None:
                with contextlib.suppress(
                    nats.errors.ConnectionClosedError,
                    nats.errors.ConnectionDrainingError,
                    nats.errors.BadSubscriptionError,
                ):
                    await self._sub.drain()  # type: ignore[no-untyped-call]
        finally:
            # Only now: the messages taken during the drain are still delivered.
            self._active = False
            self._on_close(self)

    async def _unsubscribe_now(self) -> None:
        if self._sub is None:
            return
        with contextlib.suppress(
            nats.errors.ConnectionClosedError,  # closing the connection already dropped it
            nats.errors.ConnectionDrainingError,  # draining drops it too
            nats.errors.BadSubscriptionError,  # the server or a drain removed it first
        ):
            await self._sub.unsubscribe()

    # --- s-inflight (issue 16): a replica's barrier waits until its handler saw what came before it.
    def handed_over(self) -> int:
        """Messages the connection read for this subscription and handed to its handler (or dropped
        as a slow consumer) so far; the rest wait in the subscription's queue."""
        if self._sub is None:
            return 0
        return self._sub.delivered - self._sub.pending_msgs

    def received(self) -> int:
        """Messages the connection read from the server for this subscription so far."""
        return 0 if self._sub is None else self._sub.delivered

    # --- end s-inflight

    def __repr__(self) -> str:
        return f"Subscription({self.subject!r}, queue={self.queue!r}, active={self._active})"


class EventBus:
    """One NATS connection carrying Rosey events.

    ``servers``, ``token`` and ``name`` are the published API's arguments; ``user``/``password`` select a
    per-user identity on servers with authorization, and ``inbox_prefix`` must match the
    identity's subscribe permissions when it is restricted.
    """

    def __init__(
        self,
        servers: Sequence[str] | str | None = None,
        token: str | None = None,
        name: str | None = None,
        *,
        user: str | None = None,
        password: str | None = None,
        inbox_prefix: str | None = None,
        connect_timeout: float = 5.0,
        reconnect_wait: float = 0.25,
        error_callback: ErrorCallback | None = None,
    ) -> None:
        if servers is None:
            servers = [os.getenv("NATS_URL", DEFAULT_NATS_URL)]
        elif isinstance(servers, str):
            servers = [servers]
        self.servers = list(servers)
        self.name = name
        self.stats = BusStats()
        self._token = token
        self._user = user
        self._password = password
        self._inbox_prefix = inbox_prefix
        self._connect_timeout = connect_timeout
        self._reconnect_wait = reconnect_wait
        self._error_callback = error_callback
        self._nc: Client | None = None
        self._subscriptions: set[Subscription] = set()
        self._reply_prefix: str | None = None  # the request mux: <inbox>.<id>.<token>
        self._replies: dict[str, asyncio.Future[Msg]] = {}
        self._reply_seq = 0
        self._reply_lock = asyncio.Lock()

    # ---------------------------------------------------------------- connection

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def client(self) -> Client:
        """The underlying nats-py client (for what the bus does not wrap, e.g. JetStream)."""
        if self._nc is None:
            raise BusNotConnected("the event bus is not connected; call connect() first")
        return self._nc

    async def connect(self) -> None:
        """Connect, giving up with :class:`BusNotConnected` after ``connect_timeout`` seconds.

        Once connected, the client reconnects forever: a server restart is an outage to ride
        out, not a reason to die.
        """
        if self._nc is not None:
            return
        options: dict[str, Any] = {
            "servers": self.servers,
            "name": self.name,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": self._reconnect_wait,
            "connect_timeout": max(1, int(self._connect_timeout)),
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if self._token:
            options["token"] = self._token
        if self._user:
            options["user"] = self._user
            options["password"] = self._password or ""
        if self._inbox_prefix:
            options["inbox_prefix"] = self._inbox_prefix
        nc = Client()
        servers = ", ".join(redact_url(s) for s in self.servers)
        action = f"connect to NATS at {servers} within {self._connect_timeout:g}s"
        try:
            with _NatsErrors(self, action, connecting=True):
                # With unlimited reconnects nats-py retries the first connection forever too, so
                # the deadline lives here.
                await asyncio.wait_for(nc.connect(**options), timeout=self._connect_timeout)
        except BusNotConnected:
            await _close_quietly(nc)
            raise
        self._nc = nc
        logger.debug("connected to NATS at %s as %s", redact_url(str(nc.connected_url)), self.name)

    async def disconnect(self) -> None:
        """Drain subscriptions and pending publishes, then close. Safe to call twice."""
        nc, self._nc = self._nc, None
        self._subscriptions.clear()
        self._reply_prefix = None
        replies, self._replies = self._replies, {}
        for future in replies.values():
            if not future.done():
                future.set_exception(BusNotConnected("the event bus was disconnected"))
        if nc is None or nc.is_closed:
            return
        try:
            await nc.drain()
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            logger.debug("drain failed (%s); closing", exc)
            await _close_quietly(nc)

    async def flush(self, timeout: float = 5.0) -> None:
        """Round-trip to the server: everything sent before has been processed by it.

        Two PINGs, on purpose: nats-py writes PING straight to the socket while SUB/PUB wait
        in its flusher queue, so the first PONG can come back before the server saw a
        subscription made just before. The flusher runs during the first round trip, so the
        second PING is queued behind everything sent before this call.
        """
        nc = self.client
        with _NatsErrors(self, "flush", timeout=timeout):
            for _ in range(2):
                await nc.flush(timeout=timeout)  # type: ignore[arg-type]  # accepts float

    async def __aenter__(self) -> EventBus:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    # ---------------------------------------------------------------- publishing

    async def publish(
        self,
        subject: str,
        data: dict[str, Any] | None = None,
        source: str = "unknown",
        correlation_id: str | None = None,
        *,
        event_type: str | None = None,
        reply: str | None = None,
    ) -> Event:
        """Wrap ``data`` in an event, publish it on ``subject``, and return the event."""
        event = Event(
            subject=subject,
            data=data if data is not None else {},
            source=source,
            event_type=event_type or "",
            correlation_id=correlation_id,
        )
        await self.publish_event(event, reply=reply)
        return event

    async def publish_event(self, event: Event, *, reply: str | None = None) -> None:
        """Publish an already-built event on ``event.subject``."""
        await self._publish_raw(event.subject, event.to_bytes(), reply)

    async def publish_event_to(self, event: Event, subjects: Sequence[str]) -> None:
        """Publish one event on several subjects, encoding it once (the wire format has no subject)."""
        payload = event.to_bytes()
        for subject in subjects:
            await self._publish_raw(subject, payload, None)

    async def respond(self, request: Event, event: Event) -> None:
        """Answer ``request`` (which arrived with a reply subject) with ``event``."""
        if not request.reply:
            raise ValueError(f"event on {request.subject!r} carries no reply subject")
        await self._publish_raw(request.reply, event.to_bytes(), None)

    async def _publish_raw(self, subject: str, payload: bytes, reply: str | None) -> None:
        nc = self.client
        # The boundary is only built when something failed: this runs twice per command, and a
        # try block costs nothing in Python 3.11 until it catches.
        try:
            await nc.publish(subject, payload, reply=reply or "")
        except Exception:
            with _NatsErrors(self, "publish to", subject=subject, size=len(payload)):
                raise

    async def request(
        self,
        subject: str,
        data: dict[str, Any] | None = None,
        source: str = "unknown",
        correlation_id: str | None = None,
        *,
        timeout: float = 5.0,
        event_type: str | None = None,
    ) -> Event:
        """Publish an event and wait for one reply event.

        Raises :class:`NoResponders` at once when nobody listens on ``subject`` and
        :class:`RequestTimeout` when nobody answers within ``timeout`` seconds.
        """
        event = Event(
            subject=subject,
            data=data if data is not None else {},
            source=source,
            event_type=event_type or "",
            correlation_id=correlation_id,
        )
        msg = await self._request_raw(subject, event.to_bytes(), timeout)
        return Event.from_bytes(msg.data, msg.subject)

    async def _request_raw(self, subject: str, payload: bytes, timeout: float) -> Msg:
        """One request through this bus's own reply mux.

        Like nats-py's request() (one wildcard inbox subscription, a future per request), but
        the timeout is one ``call_later`` instead of ``wait_for`` and its extra task: measured
        -25 µs of CPU per command, +18 % commands/s at 100 in flight (bench/PROFILE.md).
        """
        prefix = self._reply_prefix or await self._start_reply_mux()
        loop = asyncio.get_running_loop()
        self._reply_seq += 1
        token = str(self._reply_seq)
        future: asyncio.Future[Msg] = loop.create_future()
        self._replies[token] = future
        expiry = loop.call_later(timeout, _expire, future)
        try:
            await self._publish_raw(subject, payload, prefix + token)
            msg = await future
        except Exception:
            with _NatsErrors(self, "request on", subject=subject, timeout=timeout):
                raise
        finally:
            expiry.cancel()
            self._replies.pop(token, None)
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            raise NoResponders(f"nobody is subscribed to {subject!r}", subject=subject)
        return msg

    async def _start_reply_mux(self) -> str:
        async with self._reply_lock:
            if self._reply_prefix is None:
                prefix = f"{self._inbox_prefix or '_INBOX'}.{new_id()}."
                nc = self.client
                with _NatsErrors(self, "request"):
                    await nc.subscribe(prefix + "*", cb=self._on_reply)
                self._reply_prefix = prefix
        return self._reply_prefix

    async def _on_reply(self, msg: Msg) -> None:
        assert self._reply_prefix is not None
        future = self._replies.pop(msg.subject[len(self._reply_prefix) :], None)
        if future is not None and not future.done():
            future.set_result(msg)

    # ---------------------------------------------------------------- subscribing

    async def subscribe(self, subject: str, handler: Handler, queue: str | None = None) -> Subscription:
        """Deliver every event on ``subject`` to ``handler``, one at a time, in order.

        A handler that must not hold up the next message should start a task itself.
        """

        subscription = Subscription(subject, queue, self._subscriptions.discard)

        async def deliver(msg: Msg) -> None:
            if not subscription.active:
                return
            try:
                event = Event.from_bytes(msg.data, msg.subject, msg.reply)
            except MalformedEvent as exc:
                self.stats.malformed += 1
                logger.warning("dropped malformed message on %s: %s", msg.subject, exc)
                return
            token = _delivering.set(subscription)
            try:
                await handler(event)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the subscription itself is being torn down
                # A handler awaiting something cancelled elsewhere must not end the subscription.
                self.stats.handler_errors += 1
                logger.error("handler for %s was cancelled on event %s", subject, event.id)
            except Exception:
                self.stats.handler_errors += 1
                logger.exception("handler for %s failed on event %s", subject, event.id)
            finally:
                _delivering.reset(token)

        nc = self.client
        with _NatsErrors(self, "subscribe to", subject=subject):
            subscription._sub = await nc.subscribe(subject, queue=queue or "", cb=deliver)
        self._subscriptions.add(subscription)
        return subscription

    # ---------------------------------------------------------------- callbacks

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc) or type(exc).__name__
        self.stats.last_error = text
        if "permissions violation" in text.lower():
            self.stats.permission_violations += 1
            logger.warning("NATS denied %s: %s", self.name or "this connection", text)
        else:
            logger.debug("NATS error on %s: %s", self.name, text)
        if self._error_callback is not None:
            await self._error_callback(exc)

    async def _on_disconnected(self) -> None:
        if self._nc is not None:
            logger.info("%s disconnected from NATS; reconnecting", self.name or "event bus")

    async def _on_reconnected(self) -> None:
        self.stats.reconnects += 1
        logger.info("%s reconnected to NATS", self.name or "event bus")


_NO_RESPONDERS = "503"  # the status nats-server sends back when a request has no subscriber


def _expire(future: asyncio.Future[Msg]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _NatsErrors:
    """The bus's one boundary with nats-py: its errors (and the socket's, when connecting) become Rosey's.

    ``with _NatsErrors(bus, "publish to", subject=subject, size=len(payload)): ...`` maps

    * any failure while ``connecting`` -> :class:`BusNotConnected` ("could not <action>: <reason>");
    * a closed or draining connection, or a full reconnect buffer -> :class:`BusNotConnected`;
    * a message over the server's ``max_payload`` -> :class:`PayloadTooLarge`;
    * a subject nats-py refuses -> :class:`InvalidSubject`;
    * a timeout, where the caller gave one -> :class:`RequestTimeout` (a reply on ``subject``, or
      the ``action`` itself when there is no subject);

    each raised ``from`` the original and carrying ``subject``/``timeout``/``size``. Rosey's own
    errors pass through (a nested boundary already mapped them), and so does anything unexpected,
    unchanged rather than disguised. On the command path (publish, request) it is entered only
    once something failed, inside an ``except``: a ``try`` costs nothing until it catches.
    """

    __slots__ = ("_action", "_bus", "_connecting", "_size", "_subject", "_timeout")

    def __init__(
        self,
        bus: EventBus,
        action: str,
        *,
        subject: str | None = None,
        timeout: float | None = None,
        size: int | None = None,
        connecting: bool = False,
    ) -> None:
        self._bus = bus
        self._action = action
        self._subject = subject
        self._timeout = timeout
        self._size = size
        self._connecting = connecting

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:  # never swallows: it re-raises, mapped or not
        if exc is None or isinstance(exc, RoseyError):
            return
        error = self._translate(exc)
        if error is not None:
            raise error from exc

    def _translate(self, exc: BaseException) -> RoseyError | None:
        subject = self._subject
        if self._connecting:
            if not isinstance(exc, TimeoutError | OSError | nats.errors.Error):
                return None
            # nats-py's error callback often saw the real reason (e.g. an authorization violation)
            # before the attempt gave up with a bare timeout.
            reason = self._bus.stats.last_error or str(exc) or type(exc).__name__
            return BusNotConnected(f"could not {self._action}: {reason}", subject=subject)
        what = self._action if subject is None else f"{self._action} {subject!r}"
        if isinstance(exc, nats.errors.ConnectionClosedError | nats.errors.ConnectionDrainingError):
            return BusNotConnected(f"cannot {what}: the connection is closed", subject=subject)
        if isinstance(exc, nats.errors.OutboundBufferLimitError):
            return BusNotConnected(
                f"cannot {what}: the connection is down and its reconnect buffer is full", subject=subject
            )
        if isinstance(exc, nats.errors.MaxPayloadError):
            nc = self._bus._nc
            limit = nc.max_payload if nc is not None else None
            return PayloadTooLarge(
                f"cannot {what}: the message is {self._size} bytes, over the server's max_payload of {limit}",
                subject=subject,
                size=self._size,
                limit=limit,
            )
        if isinstance(exc, nats.errors.BadSubjectError):
            return InvalidSubject(
                f"cannot {what}: not a valid NATS subject (empty, whitespace, or a misplaced wildcard)",
                subject=subject,
            )
        if isinstance(exc, TimeoutError) and self._timeout is not None:  # nats.errors.TimeoutError too
            if subject is None:
                message = f"NATS {self._action} did not complete within {self._timeout:g}s"
            else:
                message = f"no reply on {subject!r} within {self._timeout:g}s"
            return RequestTimeout(message, subject=subject, timeout=self._timeout)
        return None


def redact_url(url: str) -> str:
    """Hide credentials embedded in a server URL before it reaches a log or an error."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


async def _close_quietly(nc: Client) -> None:
    try:
        await nc.close()
    except Exception as exc:  # closing a half-open client may fail in many ways; none matter
        logger.debug("closing NATS client failed: %s", exc)


# -------------------------------------------------------------------- module-level bus

_bus: EventBus | None = None


async def initialize_event_bus(
    servers: Sequence[str] | str | None = None,
    token: str | None = None,
    name: str = "rosey-core",
) -> EventBus:
    """Connect the process-wide bus (``NATS_URL``/``NATS_TOKEN`` by default) and return it."""
    global _bus
    if _bus is not None:
        if not _bus.client.is_closed:  # connected, or riding out a reconnect: keep it
            return _bus
        _bus = None
    bus = EventBus(servers, token=token or os.getenv("NATS_TOKEN") or None, name=name)
    await bus.connect()
    _bus = bus
    return bus


def get_event_bus() -> EventBus:
    """The bus set up by :func:`initialize_event_bus`."""
    if _bus is None:
        raise BusNotConnected("initialize_event_bus() has not been called")
    return _bus


async def shutdown_event_bus() -> None:
    """Disconnect the process-wide bus, if any."""
    global _bus
    bus, _bus = _bus, None
    if bus is not None:
        await bus.disconnect()
