"""Server-sent events: the wire format, one fan-out of encoded messages, and plugins' output.

A message is encoded once (:func:`sse`) and the same bytes are queued for every client
(:class:`Broadcast`): the cost of a tick does not grow with the number of open dashboards, only
the socket writes do. Each client has a small bounded queue; a client too slow to keep up is
dropped (its stream ends; a browser's ``EventSource`` reconnects by itself and gets the history
again), so a stuck client never makes the bot hold more than a few messages for it.

:class:`OutputFollowers` fans plugins' output lines out to the log views that follow them; with
nobody following, a line costs one dict lookup.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from bot.rosey.plugins.process.output import OutputLine

__all__ = ["Broadcast", "OutputFollowers", "Subscription", "line_dict", "sse"]

logger = logging.getLogger(__name__)

#: Ends a stream (sent to a subscription when it is dropped or the server stops).
END: bytes = b""


def sse(event: str, data: Mapping[str, Any] | bytes, *, event_id: int | None = None) -> bytes:
    """One server-sent event. ``data`` is JSON on one line (json escapes every line break, so a
    plugin's text cannot end the event early or forge another)."""
    payload = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head.encode() + b"data: " + payload + b"\n\n"


class Subscription:
    """One client's queue of encoded messages; :data:`END` (an empty message) ends it."""

    def __init__(self, max_messages: int) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(max_messages + 1)  # +1: room for END
        self.max_messages = max_messages
        self.dropped = 0  # messages this subscriber lost (see OutputFollowers)
        self.ended = False

    def offer(self, message: bytes) -> bool:
        """Queue ``message``; False (and nothing queued) when the queue is full."""
        if self.ended:
            return True
        if self.queue.qsize() >= self.max_messages:
            return False
        self.queue.put_nowait(message)
        return True

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(END)

    async def get(self) -> bytes:
        return await self.queue.get()


class Broadcast:
    """The same encoded messages to every subscriber; slow subscribers are dropped."""

    def __init__(self, *, max_messages: int = 16) -> None:
        self.max_messages = max_messages
        self._subscribers: set[Subscription] = set()

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self.max_messages)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, message: bytes) -> None:
        for subscription in list(self._subscribers):
            if not subscription.offer(message):
                logger.info("web: a dashboard client fell %d messages behind; dropped it", self.max_messages)
                self._subscribers.discard(subscription)
                subscription.end()

    def close(self) -> None:
        for subscription in self._subscribers:
            subscription.end()
        self._subscribers.clear()


def line_dict(line: OutputLine) -> dict[str, Any]:
    """One output line as the log view gets it (as ``rosey logs --follow`` does)."""
    return {"t": line.timestamp, "stream": line.stream, "text": line.text}


class OutputFollowers:
    """Log views following plugins: :meth:`listener` is called for every output line (register it
    once with the supervisor); lines a slow view cannot take are counted, not kept."""

    def __init__(self, *, max_lines: int = 2000) -> None:
        self.max_lines = max_lines
        self._followers: dict[str, set[Subscription]] = {}

    def follow(self, plugin: str) -> Subscription:
        subscription = Subscription(self.max_lines)
        self._followers.setdefault(plugin, set()).add(subscription)
        return subscription

    def unfollow(self, plugin: str, subscription: Subscription) -> None:
        followers = self._followers.get(plugin)
        if followers is not None:
            followers.discard(subscription)
            if not followers:
                del self._followers[plugin]

    def listener(self, plugin: str, line: OutputLine) -> None:
        followers = self._followers.get(plugin)
        if not followers:
            return
        message = sse("line", line_dict(line))
        for subscription in followers:
            if not subscription.offer(message):
                subscription.dropped += 1

    def close(self) -> None:
        for followers in self._followers.values():
            for subscription in followers:
                subscription.end()
        self._followers.clear()
