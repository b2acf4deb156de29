"""Per-plugin publish rates as the NATS server counts them, read from its ``/connz`` endpoint.

NATS has no per-user message-rate limit, so flood detection is Rosey's job, and it must not rest
on anything a plugin says about itself. The server counts, per connection, the messages and
bytes it received (``in_msgs``, ``in_bytes``; denied publishes included) and tells which user
the connection authenticated as (``/connz?auth=true``). :class:`TrafficMonitor` reads that every
``interval`` seconds over an asyncio connection to the loopback monitoring port (an HTTP/1.0 GET:
no thread, no new dependency, never blocking the loop), adds up each plugin's connections (a
plugin may open several with its own credentials) and hands ``{plugin: PluginTraffic}`` (rates
over the last ``window`` seconds, and the subscriptions held now) to a callback, the app's
:class:`~bot.rosey.supervision.flood.FloodGuard`.

Connections that closed between two reads (a plugin reconnecting, or churning connections to
hide a flood) are not in the list of open ones; the most recently closed connections are read
too, so their last counts are not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.rosey.errors import NatsMonitorError
from bot.rosey.supervision.flood import PluginTraffic

__all__ = [
    "ConnectionCount",
    "ConnzPage",
    "TrafficConfig",
    "TrafficMonitor",
    "read_connz",
    "server_time",
    "why_no_flood_detection",
]

logger = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024 * 1024  # a /connz answer for thousands of connections is a few MB
_CLOSED_PAGE = 64  # closed connections per request: more only while every one is new
_MAX_CLOSED_PER_READ = 4096


def why_no_flood_detection(*, embedded: bool, monitor: bool, monitor_url: str | None) -> str | None:
    """Why plugins' publish rates cannot be watched with this NATS setup, or None when they can."""
    if embedded and not monitor:
        return "off: [nats] monitor = false (the server's counters are read from its monitoring port)"
    if not embedded and monitor_url is None:
        return (
            "unavailable: an external NATS server; set [nats] monitor_url to its monitoring endpoint "
            "(nats-server -m PORT, on 127.0.0.1)"
        )
    return None


@dataclass(frozen=True, kw_only=True)
class TrafficConfig:
    """How often ``/connz`` is read and over how long a rate is averaged."""

    interval: float = 0.5
    window: float = 2.0
    request_timeout: float = 2.0
    page: int = 1024  # connections per request

    def __post_init__(self) -> None:
        if min(self.interval, self.window, self.request_timeout) <= 0:
            raise ValueError("traffic intervals must be positive")
        if self.window < self.interval:
            raise ValueError("the window must span at least one interval")
        if self.page < 1:
            raise ValueError("page must be >= 1")


@dataclass(frozen=True, slots=True)
class ConnectionCount:
    """One connection's totals as the server counts them."""

    cid: int
    user: str
    in_msgs: int
    in_bytes: int
    subscriptions: int = 0


@dataclass(frozen=True, slots=True)
class ConnzPage:
    """One page of ``/connz``: its connections, the server's total for the state asked, and when
    the server took it (:func:`server_time` of its ``now``; None when it did not say)."""

    connections: list[ConnectionCount]
    total: int
    taken_at: float | None = None


def server_time(text: object) -> float | None:
    """nats-server's ``now`` (RFC 3339 with nanoseconds, ``2026-12-02T22:31:05.123456789Z``) as
    seconds since the epoch, or None if it is not one."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    whole, _, fraction = text[:-1].partition(".")
    try:
        seconds = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
        return seconds + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
    except ValueError:
        return None


#: A server time further than this from the local one (mapped) means its wall clock was stepped.
_CLOCK_STEP = 5.0


async def read_connz(
    monitor_url: str,
    *,
    state: str = "open",
    limit: int = 1024,
    offset: int = 0,
    timeout: float = 2.0,
    cid: int | None = None,  # s-remote: that one connection only (leaf connections too)
) -> ConnzPage:
    """One page of ``/connz?auth=true``: the connections and the server's total for ``state``.

    Raises :class:`NatsMonitorError` when the endpoint cannot be reached or answers nonsense.
    """
    parts = urlsplit(monitor_url)
    if parts.scheme != "http" or not parts.hostname:
        raise NatsMonitorError(f"not an http:// monitoring URL: {monitor_url!r}", url=monitor_url)
    port = parts.port or 80
    path = f"{parts.path.rstrip('/')}/connz?auth=true&state={state}&limit={limit}&offset={offset}"
    if state == "closed":
        path += "&sort=stop"  # most recently closed first
    if cid is not None:  # s-remote
        path += f"&cid={int(cid)}"
    request = f"GET {path} HTTP/1.0\r\nHost: {parts.hostname}:{port}\r\n\r\n".encode()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, port)
            try:
                writer.write(request)
                raw = await _read_to_end(reader)  # HTTP/1.0: the server closes after the body
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise NatsMonitorError(f"cannot read {monitor_url}/connz: {reason}", url=monitor_url) from exc
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        raise NatsMonitorError(f"{monitor_url}/connz answered {line!r}", url=monitor_url)
    try:
        data = json.loads(body)
        connections = [_count(entry) for entry in data.get("connections") or []]
        total = int(data.get("total", len(connections)))
    except (ValueError, TypeError, AttributeError) as exc:
        message = f"{monitor_url}/connz sent an unreadable answer: {exc}"
        raise NatsMonitorError(message, url=monitor_url) from exc
    return ConnzPage(connections, total, server_time(data.get("now")))


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(256 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > _MAX_BODY:
            raise OSError(f"the answer is over {_MAX_BODY} bytes")
    return b"".join(chunks)


def _count(entry: Mapping[str, Any]) -> ConnectionCount:
    return ConnectionCount(
        cid=int(entry["cid"]),
        user=str(entry.get("authorized_user") or ""),
        in_msgs=int(entry.get("in_msgs") or 0),
        in_bytes=int(entry.get("in_bytes") or 0),
        subscriptions=int(entry.get("subscriptions") or 0),
    )


RatesCallback = Callable[[dict[str, PluginTraffic]], object]


class TrafficMonitor:
    """Reads ``/connz`` every ``interval``; ``on_rates({plugin: PluginTraffic})`` after each read.

    ``users`` maps NATS user names to plugin names; connections of other users (the core, the
    CLI) are not counted.
    """

    def __init__(
        self,
        monitor_url: str,
        users: Mapping[str, str],
        on_rates: RatesCallback | None = None,
        config: TrafficConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.monitor_url = monitor_url
        self.config = config or TrafficConfig()
        # The time of a reading is the server's, when it says (its ``now``: when it took the
        # counters). Taken here instead, before the request, a reply that came late (the bot's
        # loop busy with the very load being measured) gave counters from later than that time,
        # and a legitimate echo plugin at full speed read as 56,486 msgs/s for ~43,000. A
        # ``clock`` given here is used instead (tests move it by hand).
        self._clock = clock
        self._users = dict(users)
        self._on_rates = on_rates
        self._seen: dict[int, ConnectionCount] = {}  # open connections at the last read
        self._max_cid = 0
        self._totals: dict[str, tuple[int, int]] = {}  # plugin -> messages, bytes since we began
        self._history: deque[tuple[float, dict[str, tuple[int, int]]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._sampled = asyncio.Event()
        self.rates: dict[str, PluginTraffic] = {}
        self._server_offset: float | None = None  # local monotonic minus server time, first reading
        self.samples = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rosey-traffic")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def counted(self) -> dict[str, tuple[int, int]]:
        """Messages and bytes each plugin sent since the first read (the first read's are its base)."""
        return dict(self._totals)

    async def wait_for_sample(self) -> dict[str, PluginTraffic]:
        """The rates of the next read (tests, and anyone who wants the next figure rather than the last)."""
        self._sampled.clear()
        await self._sampled.wait()
        return self.rates

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except NatsMonitorError as exc:
                if self.last_error is None:  # once per outage: a server restart is not news each 0.5 s
                    logger.warning("flood detection paused: %s", exc)
                self.last_error = str(exc)
            else:
                if self.last_error is not None:
                    logger.info("flood detection resumed")
                self.last_error = None
            await asyncio.sleep(self.config.interval)

    async def sample(self) -> dict[str, PluginTraffic]:
        """Read the server's counters once, update the rates and hand them to ``on_rates``."""
        before = time.monotonic()
        current, taken_at = await self._read_open()
        now = self._clock() if self._clock is not None else self._reading_time(before, taken_at)
        if self.samples:
            closed = await self._read_closed()
            self._add(current.values())
            self._add(closed.values())
        else:  # the first read is the base: what was sent before it is history
            page = await self._read("closed", _CLOSED_PAGE, 0)
            closed = {count.cid: count for count in page.connections}
        self._max_cid = max([self._max_cid, *current, *closed])
        self._seen = current
        self.rates = self._rates(now)
        self.samples += 1
        self._sampled.set()
        if self._on_rates is not None:
            try:
                self._on_rates(self.rates)
            except Exception:  # a bug in the judge must not end the measuring
                logger.exception("flood check failed")
        return self.rates

    def _add(self, counts: Iterable[ConnectionCount]) -> None:
        for count in counts:
            plugin = self._users.get(count.user)
            if plugin is None:
                continue
            before = self._seen.get(count.cid)
            msgs, size = self._totals.get(plugin, (0, 0))
            msgs += count.in_msgs - (before.in_msgs if before else 0)
            size += count.in_bytes - (before.in_bytes if before else 0)
            self._totals[plugin] = (msgs, size)

    def _reading_time(self, before: float, taken_at: float | None) -> float:
        """The reading's time on this process's monotonic clock: the server's ``now`` moved by the
        offset between the two clocks seen at the first reading, or the local time the request
        began. A server time far from that (the wall clock was stepped) starts a new offset."""
        if taken_at is None:
            return before
        if self._server_offset is None or abs(taken_at + self._server_offset - before) > _CLOCK_STEP:
            self._server_offset = before - taken_at
        return taken_at + self._server_offset

    async def _read_open(self) -> tuple[dict[int, ConnectionCount], float | None]:
        """Every open connection, and when the server took the first page (the counters of a
        large server's later pages are a little younger)."""
        found: dict[int, ConnectionCount] = {}
        taken_at: float | None = None
        while True:
            page = await self._read("open", self.config.page, len(found))
            if taken_at is None:
                taken_at = page.taken_at
            found.update((count.cid, count) for count in page.connections)
            if not page.connections or len(found) >= page.total:
                return found, taken_at

    async def _read_closed(self) -> dict[int, ConnectionCount]:
        """Connections closed since the last read, newest first: those open then, and those we never saw.

        Closed connections stay listed (the server keeps the last ones), so the reading stops at
        the first page holding one that was already closed at the last read.
        """
        found: dict[int, ConnectionCount] = {}
        offset = 0
        while offset < _MAX_CLOSED_PER_READ:
            page = (await self._read("closed", _CLOSED_PAGE, offset)).connections
            new = [c for c in page if c.cid > self._max_cid or c.cid in self._seen]
            found.update((count.cid, count) for count in new)
            if len(new) < len(page) or len(page) < _CLOSED_PAGE:
                break
            offset += len(page)
        return found

    async def _read(self, state: str, limit: int, offset: int) -> ConnzPage:
        return await read_connz(
            self.monitor_url, state=state, limit=limit, offset=offset, timeout=self.config.request_timeout
        )

    def _rates(self, now: float) -> dict[str, PluginTraffic]:
        self._history.append((now, dict(self._totals)))
        # Keep the newest reading at or before the window's start: it is the base of the average.
        while len(self._history) >= 2 and self._history[1][0] <= now - self.config.window:
            self._history.popleft()
        start, base = self._history[0]
        span = now - start
        if span < self.config.window:
            return {}  # not a whole window yet: a short burst must not read as a flood
        rates = {}
        subscriptions: dict[str, int] = {}
        for count in self._seen.values():  # the open connections: subscriptions are a level, not a rate
            if (plugin := self._users.get(count.user)) is not None:
                subscriptions[plugin] = subscriptions.get(plugin, 0) + count.subscriptions
        for plugin in self._totals.keys() | subscriptions.keys():
            msgs, size = self._totals.get(plugin, (0, 0))
            msgs0, size0 = base.get(plugin, (0, 0))
            rates[plugin] = PluginTraffic(
                msgs_per_second=max(0, msgs - msgs0) / span,
                bytes_per_second=max(0, size - size0) / span,
                seconds=span,
                subscriptions=subscriptions.get(plugin, 0),
            )
        return rates
