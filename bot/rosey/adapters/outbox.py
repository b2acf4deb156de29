"""An adapter's outbound queue: nothing lost on a disconnect, nothing faster than the platform allows.

Every piece an adapter says goes through one :class:`Outbox`. It paces delivery with a token
bucket (``burst`` messages at once, then ``rate`` per second: IRC servers disconnect a client
that floods, CyTube silently drops chat beyond its limits), holds messages while the platform
is disconnected, and sends them after the reconnect. It is bounded: beyond ``max_queued``
messages, or for a message older than ``max_age`` seconds, the oldest are dropped and counted,
and the count is logged once per episode, never silently.

Plugin-process side: imports only the standard library and ``core``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.rosey.core.chat import OutgoingMessage
from bot.rosey.errors import DeliveryFailed

__all__ = ["DeliveryFailed", "Outbox", "OutboxStats", "Pacer"]

logger = logging.getLogger(__name__)

#: Attempts at one message before it is dropped (a message the platform keeps refusing must not
#: block everything behind it).
MAX_ATTEMPTS = 3
#: Pause before the second attempt (doubled before the third).
RETRY_DELAY = 1.0


class Pacer:
    """A token bucket: ``burst`` sends at once, then one every ``1/rate`` seconds."""

    def __init__(self, rate: float, burst: int) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def delay(self) -> float:
        """Seconds until the next send may go (0 if now); takes the token when it is 0."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def wait(self) -> None:
        while (delay := self.delay()) > 0:  # noqa: ASYNC110 - a pace, not a wait for an event
            await asyncio.sleep(delay)


@dataclass
class OutboxStats:
    sent: int = 0
    dropped: int = 0
    queued: int = 0


@dataclass
class _Queued:
    message: OutgoingMessage
    since: float
    attempts: int = 0


class Outbox:
    """Queue, pace and deliver; ``connected`` gates delivery (the adapter sets and clears it)."""

    def __init__(
        self,
        deliver: Callable[[OutgoingMessage], Awaitable[None]],
        *,
        rate: float,
        burst: int,
        max_queued: int = 1000,
        max_age: float = 300.0,
        name: str = "adapter",
    ) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, got {max_queued}")
        self._deliver = deliver
        self.pacer = Pacer(rate, burst)
        self.max_queued = max_queued
        self.max_age = max_age
        self.name = name
        self.connected = asyncio.Event()
        self.stats = OutboxStats()
        self._queue: deque[_Queued] = deque()
        self._ready = asyncio.Event()
        self._dropped_unreported = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def put(self, message: OutgoingMessage) -> None:
        """Queue one piece (already split to fit the platform)."""
        if len(self._queue) >= self.max_queued:
            self._queue.popleft()
            self._drop(1, "the queue is full")
        self._queue.append(_Queued(message, time.monotonic()))
        self.stats.queued = len(self._queue)
        self._idle.clear()
        self._ready.set()

    async def drained(self) -> None:
        """Wait until every queued message was delivered or dropped."""
        await self._idle.wait()

    async def run(self) -> None:
        """Deliver forever (cancel to stop)."""
        while True:
            if not self._queue:
                self._idle.set()
                self._ready.clear()
                await self._ready.wait()
                continue
            if not self.connected.is_set():
                await self.connected.wait()
            if self._dropped_unreported:
                self._report_drops()
            item = self._queue[0]
            if time.monotonic() - item.since > self.max_age:
                self._queue.popleft()
                self._drop(1, f"older than {self.max_age:g} s (the platform was unreachable)")
                continue
            await self.pacer.wait()
            if not self.connected.is_set():
                continue  # lost while pacing: keep it for the reconnect
            try:
                await self._deliver(item.message)
            except DeliveryFailed as exc:
                self._queue.popleft()
                logger.warning("%s: message not sent: %s", self.name, exc)
                self._drop(1, str(exc), report=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost connection, a 5xx: keep it and try again
                item.attempts += 1
                if item.attempts >= MAX_ATTEMPTS:
                    self._queue.popleft()
                    self._drop(1, f"{MAX_ATTEMPTS} attempts failed, the last with {exc!r}")
                else:
                    # If the session died, the adapter marks it away and this waits for the
                    # reconnect; if it lives (a REST call failed beside a healthy gateway), the
                    # next attempt goes after a pause, with nothing for the adapter to do.
                    delay = RETRY_DELAY * 2 ** (item.attempts - 1)
                    logger.info("%s: delivery failed (%r); trying again in %g s", self.name, exc, delay)
                    await asyncio.sleep(delay)
            else:
                self._queue.popleft()
                self.stats.sent += 1
            self.stats.queued = len(self._queue)

    def _drop(self, count: int, why: str, *, report: bool = True) -> None:
        self.stats.dropped += count
        self.stats.queued = len(self._queue)
        if report:
            self._dropped_unreported += count
            if self.connected.is_set():
                self._report_drops(why)
            else:
                logger.debug("%s: dropped a message: %s", self.name, why)

    def _report_drops(self, why: str = "the platform was unreachable") -> None:
        if self._dropped_unreported:
            logger.warning("%s: dropped %d outgoing message(s): %s", self.name, self._dropped_unreported, why)
            self._dropped_unreported = 0
