"""Candidate optimizations of the command path, applied as patches for measurement only.

NOT a way to run Rosey: ``bench/experiments.py`` applies these in its own process (router side)
and in ``tuned_idle_plugin.py`` (plugin side) to measure what each suggestion would gain end to
end, A/B against the unpatched code in the same run. The real change belongs in the library;
each function's docstring says what that change is.

Lives in ``bench/plugins/`` because a sandboxed plugin may read only its own directory (and the
``bot`` package), not ``bench/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterable
from typing import Any

import nats.errors

from bot.rosey.core import events
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.router import CommandOutcome, CoreRouter, OutcomeKind
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import BusNotConnected, MalformedEvent, NoResponders, RequestTimeout
from bot.rosey.plugins.plugin_interface import PluginInterface

TUNINGS = (
    "fast_ids",
    "cached_encoder",
    "encode_once",
    "reply_only",
    "eager_dispatch",
    "no_race",
    "fast_request",
)

# ---------------------------------------------------------------------- shared: ids, encoder

_ORIGINAL_NEW_ID_CODE = events.new_id.__code__
_ORIGINAL_TO_BYTES = Event.to_bytes


def _fast_new_id() -> str:
    # Runs with events' globals (see apply_fast_ids): a random per-process prefix + a counter,
    # like NATS's NUID; 32 hex digits as before.
    return f"{_bench_id_prefix}{next(_bench_id_counter):016x}"  # type: ignore[name-defined]  # noqa: F821


def apply_fast_ids(on: bool = True) -> None:
    """Library change: ``new_id()`` = 16 random hex digits per process + a 16-digit counter
    (or ``os.urandom(16).hex()``) instead of ``uuid.uuid4().hex``. The Event dataclass keeps
    a reference to ``new_id`` as its default factory, so the patch swaps the function's code."""
    if on:
        vars(events)["_bench_id_prefix"] = os.urandom(8).hex()
        vars(events)["_bench_id_counter"] = itertools.count()
        events.new_id.__code__ = _fast_new_id.__code__
    else:
        events.new_id.__code__ = _ORIGINAL_NEW_ID_CODE


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _cached_to_bytes(self: Event) -> bytes:
    envelope = {
        "v": self.version,
        "id": self.id,
        "type": self.event_type,
        "source": self.source,
        "ts": self.timestamp,
        "cid": self.correlation_id,
        "data": self.data,
    }
    try:
        return _ENCODER.encode(envelope).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"event data for {self.subject!r} is not JSON-serializable: {exc}") from exc


def apply_cached_encoder(on: bool = True) -> None:
    """Library change: one module-level ``json.JSONEncoder(ensure_ascii=False, separators=...,
    allow_nan=False)`` in events.py; ``json.dumps`` with any keyword builds a new encoder per call."""
    Event.to_bytes = _cached_to_bytes if on else _ORIGINAL_TO_BYTES  # type: ignore[method-assign]


# ---------------------------------------------------------------------- plugin side


async def _publish_answer_encode_once(
    self: PluginInterface, action: str, payload: dict[str, Any], correlation_id: str | None
) -> None:
    """Library change (semantics kept): encode the answer once and publish the same bytes to the
    result subject and to the reply inbox; the subject is cached per action."""
    bus = self._bus()
    subject = _answer_subject(self, action)
    event = Event(
        subject=subject, data=payload, source=f"plugin-{self.plugin_name}", correlation_id=correlation_id
    )
    wire = event.to_bytes()
    await bus._publish_raw(subject, wire, None)
    reply = self._reply_to.pop(correlation_id, None) if correlation_id else None
    if reply:
        await bus._publish_raw(reply, wire, None)


async def _publish_answer_reply_only(
    self: PluginInterface, action: str, payload: dict[str, Any], correlation_id: str | None
) -> None:
    """Library change (semantics change): a command that came as a request is answered on its
    reply inbox only; the result subject gets the answer only when there is nobody to reply to.
    (Observers of rosey.commands.<p>.result would have to go; nothing in the core listens there.)"""
    bus = self._bus()
    subject = _answer_subject(self, action)
    event = Event(
        subject=subject, data=payload, source=f"plugin-{self.plugin_name}", correlation_id=correlation_id
    )
    reply = self._reply_to.pop(correlation_id, None) if correlation_id else None
    await bus._publish_raw(reply or subject, event.to_bytes(), None)


def _answer_subject(plugin: PluginInterface, action: str) -> str:
    cache: dict[str, str] | None = getattr(plugin, "_bench_subjects", None)
    if cache is None:
        cache = {}
        plugin._bench_subjects = cache  # type: ignore[attr-defined]
    subject = cache.get(action)
    if subject is None:
        subject = cache[action] = Subjects.plugin_command(plugin.plugin_name, action)
    return subject


_ORIGINAL_PUBLISH_ANSWER = PluginInterface._publish_answer
_ORIGINAL_WRAPPER = PluginInterface._handle_command_wrapper


class _Resume:
    """Awaitable that keeps driving a coroutine which already ran its first step eagerly."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Any, first: Any) -> None:
        self._coro, self._first = coro, first

    def __await__(self) -> Any:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resume(coro: Any, first: Any) -> Any:
    return await _Resume(coro, first)


async def _handle_command_wrapper_eager(self: PluginInterface, event: Event) -> None:
    """Library change: run the command's first step right here (like Python 3.12's
    ``asyncio.eager_task_factory``) and create a task only if it has to wait for something.
    A handler that answers without waiting (most do: nats-py's publish only queues bytes) then
    costs no task, no extra loop iteration, no done callback. The semaphore stays as it is."""
    if event.reply and event.correlation_id:
        self._reply_to[event.correlation_id] = event.reply
        if len(self._reply_to) > 10_000:
            self._reply_to.popitem(last=False)
    if self._slots is None:
        self._slots = asyncio.Semaphore(self._effective_concurrency())
    await self._slots.acquire()
    coro = self._run_command(event)
    try:
        first = coro.send(None)
    except StopIteration:
        return
    task = asyncio.get_running_loop().create_task(_resume(coro, first))
    self._in_flight.add(task)
    task.add_done_callback(self._in_flight.discard)


def apply_plugin(tunings: Iterable[str]) -> None:
    chosen = set(tunings)
    unknown = chosen - set(TUNINGS)
    if unknown:
        raise ValueError(f"unknown tunings: {sorted(unknown)}")
    apply_fast_ids("fast_ids" in chosen)
    apply_cached_encoder("cached_encoder" in chosen)
    if "reply_only" in chosen:
        PluginInterface._publish_answer = _publish_answer_reply_only  # type: ignore[method-assign]
    elif "encode_once" in chosen:
        PluginInterface._publish_answer = _publish_answer_encode_once  # type: ignore[method-assign]
    else:
        PluginInterface._publish_answer = _ORIGINAL_PUBLISH_ANSWER  # type: ignore[method-assign]
    PluginInterface._handle_command_wrapper = (  # type: ignore[method-assign]
        _handle_command_wrapper_eager if "eager_dispatch" in chosen else _ORIGINAL_WRAPPER
    )


# ---------------------------------------------------------------------- router side


class NoRaceRouter(CoreRouter):
    """Library change: ``execute`` awaits the bus request in its own task instead of wrapping
    it in a second task raced against a crash future with ``asyncio.wait``; a crash event
    cancels the waiting tasks of that plugin (``Task.cancel(msg)``), and ``execute`` turns that
    cancellation into CRASHED (``Task.uncancel()`` so a real outer cancel still propagates).
    Also skips the per-call ``Subjects`` validation for names already validated once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: dict[str, set[asyncio.Task[Any]]] = {}
        self._crash_reason: dict[asyncio.Task[Any], str] = {}
        self._subjects: dict[str, str] = {}

    async def execute(  # type: ignore[override]
        self,
        plugin: str,
        args: list[str],
        *,
        user: str | dict[str, Any] = "console",
        channel: str = "console",
        timeout: float | None = None,
    ) -> CommandOutcome:
        started = time.monotonic()
        correlation_id = events.new_id()

        def outcome(kind: OutcomeKind, message: str, data: dict[str, Any] | None = None) -> CommandOutcome:
            return CommandOutcome(
                kind=kind,
                plugin=plugin,
                message=message,
                data=data or {},
                correlation_id=correlation_id,
                elapsed=time.monotonic() - started,
            )

        subject = self._subjects.get(plugin)
        if subject is None:
            try:
                subject = self._subjects[plugin] = Subjects.plugin_command(plugin, "execute")
            except ValueError:
                return outcome(OutcomeKind.UNKNOWN, self._unknown_message(plugin))
        wait = timeout if timeout is not None else self.config.timeout_for(plugin)
        data = {"args": list(args), "user": user, "channel": channel}
        task = asyncio.current_task()
        assert task is not None
        waiting = self._waiting.setdefault(plugin, set())
        waiting.add(task)
        try:
            reply = await self.bus.request(subject, data, self.source, correlation_id, timeout=wait)
        except asyncio.CancelledError:
            reason = self._crash_reason.pop(task, None)
            if reason is None or task.uncancel() > 0:
                raise
            return outcome(
                OutcomeKind.CRASHED,
                f"plugin '{plugin}' crashed while handling your command ({reason})",
                {"reason": reason},
            )
        except NoResponders:
            return self._no_responders(plugin, outcome)
        except RequestTimeout:
            return outcome(OutcomeKind.TIMEOUT, f"plugin '{plugin}' did not answer within {wait:g} s")
        except BusNotConnected:
            return outcome(
                OutcomeKind.UNAVAILABLE, "commands are unavailable right now: the bot lost its message bus"
            )
        except MalformedEvent:
            return outcome(OutcomeKind.ERROR, f"⚠️ {plugin}: the plugin sent an unreadable answer")
        finally:
            waiting.discard(task)
            if not waiting:
                self._waiting.pop(plugin, None)
        return self._answered(plugin, reply, outcome)

    async def _on_plugin_crashed(self, event: Event) -> None:
        plugin = Subjects.plugin_of(event.subject)
        reason = str(event.data.get("reason") or "no reason given")
        for task in list(self._waiting.get(plugin or "", ())):
            if not task.done() and task not in self._crash_reason:
                self._crash_reason[task] = reason
                task.cancel()


class _ReplyMux:
    """One wildcard inbox subscription; each request waits on a plain future with a timer."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.counter = itertools.count()

    async def on_reply(self, msg: Any) -> None:
        future = self.pending.get(msg.subject[len(self.prefix) :])
        if future is not None and not future.done():
            future.set_result(msg)


def _expire(future: asyncio.Future[Any], subject: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(RequestTimeout(f"no reply on {subject!r} within {timeout:g}s"))


_ORIGINAL_REQUEST = EventBus.request
_NO_RESPONDERS = "503"


async def _fast_request(
    self: EventBus,
    subject: str,
    data: dict[str, Any] | None = None,
    source: str = "unknown",
    correlation_id: str | None = None,
    *,
    timeout: float = 5.0,
    event_type: str | None = None,
) -> Event:
    """Library change: EventBus.request keeps its own reply mux (one ``_INBOX.<id>.*``
    subscription, a dict of futures, a counter for tokens) and times out with
    ``loop.call_later`` instead of nats-py's ``request()``, whose ``asyncio.wait_for`` (Python
    3.11), NUID and ``secrets.token_hex`` cost ~15 µs per call. No-responders (status 503) and
    timeouts raise the same errors as today."""
    nc = self.client
    mux: _ReplyMux | None = getattr(self, "_bench_mux", None)
    if mux is None or getattr(self, "_bench_mux_nc", None) is not nc:
        mux = _ReplyMux(nc.new_inbox() + ".")
        await nc.subscribe(mux.prefix + "*", cb=mux.on_reply)
        self._bench_mux, self._bench_mux_nc = mux, nc  # type: ignore[attr-defined]
    event = Event(
        subject=subject,
        data=data if data is not None else {},
        source=source,
        event_type=event_type or "",
        correlation_id=correlation_id,
    )
    token = f"{next(mux.counter):x}"
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    mux.pending[token] = future
    timer = loop.call_later(timeout, _expire, future, subject, timeout)
    try:
        try:
            await nc.publish(subject, event.to_bytes(), reply=mux.prefix + token)
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
            raise BusNotConnected(f"cannot request {subject!r}: the connection is closed") from exc
        msg = await future
    finally:
        timer.cancel()
        del mux.pending[token]
    if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
        raise NoResponders(f"nobody is subscribed to {subject!r}")
    return Event.from_bytes(msg.data, msg.subject)


def apply_fast_request(on: bool = True) -> None:
    EventBus.request = _fast_request if on else _ORIGINAL_REQUEST  # type: ignore[method-assign]


def make_router(bus: EventBus, tunings: Iterable[str], **kwargs: Any) -> CoreRouter:
    return (NoRaceRouter if "no_race" in set(tunings) else CoreRouter)(bus, **kwargs)


@contextlib.contextmanager
def router_side(tunings: Iterable[str]):  # type: ignore[no-untyped-def]
    """Apply the process-wide router-side patches (ids, encoder) for the duration of a block."""
    chosen = set(tunings)
    apply_fast_ids("fast_ids" in chosen)
    apply_cached_encoder("cached_encoder" in chosen)
    apply_fast_request("fast_request" in chosen)
    try:
        yield
    finally:
        apply_fast_ids(False)
        apply_cached_encoder(False)
        apply_fast_request(False)
