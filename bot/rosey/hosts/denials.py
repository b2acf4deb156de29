"""Which host the hub's NATS server refused: leaf denials attributed to hosts for ``rosey status``.

nats-server's log line for a leaf connection's violation names the connection, not the user
(``127.0.0.1:55724 - lid:6 - Publish Violation on "..."``), and it closes that connection right
after. Its monitoring endpoint still names the user then: ``/connz?auth=true&state=all&cid=6``
lists leaf connections, open and recently closed, each with its ``authorized_user`` (the host's
leaf user, ``host_<name>``), which the server checked against the password. So each denial is
looked up by its connection id on the loopback monitoring port and counted for that host; a
denial that cannot be (monitoring off, the endpoint unreachable, a user that is no host) is
counted as unattributed, never guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from bot.rosey.broker.traffic import read_connz
from bot.rosey.errors import NatsMonitorError

__all__ = ["UNATTRIBUTED", "HostDenials", "LeafDenials"]

logger = logging.getLogger(__name__)

#: Denials waiting for their lookup; past this, they are counted as unattributed (a host
#: hammering the leaf port must not grow the hub's memory).
_MAX_QUEUED = 1000
#: In ``rosey status``'s hosts: the denials no host could be named for (no host name is "?").
UNATTRIBUTED = "?"
_MAX_KNOWN = 10_000  # connection ids remembered (a host redials after each refused message)


@dataclass(frozen=True, kw_only=True)
class HostDenials:
    count: int
    last: str | None


class LeafDenials:
    """Fed by :attr:`NatsServer.on_leaf_violation` (on the server's log thread), read by status."""

    def __init__(self, monitor_url: str | None, users: Mapping[str, str]) -> None:
        self.monitor_url = monitor_url
        self.users = dict(users)  # leaf user -> host
        self.unattributed = 0
        self.why_unattributed: str | None = (
            None if monitor_url else "the hub's NATS monitoring is off ([nats] monitor = false)"
        )
        self._counts: dict[str, int] = {}
        self._last: dict[str, str] = {}
        self._hosts: dict[int, str | None] = {}  # connection id -> host (None: not a host's)
        self._queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(_MAX_QUEUED)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def record(self, lid: int, what: str) -> None:
        """From any thread; never raises (it runs on the server's log reader)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: the bot is stopping
            loop.call_soon_threadsafe(self._enqueue, lid, what)

    def of(self, host: str) -> HostDenials | None:
        count = self._counts.get(host)
        return HostDenials(count=count, last=self._last.get(host)) if count else None

    # ------------------------------------------------------------------ internals

    def _enqueue(self, lid: int, what: str) -> None:
        try:
            self._queue.put_nowait((lid, what))
        except asyncio.QueueFull:
            self.unattributed += 1

    async def _run(self) -> None:
        while True:
            lid, what = await self._queue.get()
            host = await self._host_of(lid)
            if host is None:
                self.unattributed += 1
                continue
            self._counts[host] = self._counts.get(host, 0) + 1
            self._last[host] = what
            if self._counts[host] == 1:
                logger.warning("host %s: NATS denied it %s (leaf connection %d)", host, what, lid)

    async def _host_of(self, lid: int) -> str | None:
        if lid in self._hosts:
            return self._hosts[lid]
        if self.monitor_url is None:
            return None
        try:
            connections = (await read_connz(self.monitor_url, state="all", cid=lid)).connections
        except NatsMonitorError as exc:
            self.why_unattributed = str(exc)
            logger.debug("leaf connection %d not attributed: %s", lid, exc)
            return None
        user = next((c.user for c in connections if c.cid == lid), None)
        host = self.users.get(user) if user is not None else None
        if len(self._hosts) >= _MAX_KNOWN:
            self._hosts.clear()
        self._hosts[lid] = host
        return host
