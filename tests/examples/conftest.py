"""Shared pieces of the example plugins' tests: where the examples are, and a subscription to wait on.

The tests drive the bundled examples the way a plugin author drives their own: through the
``harness`` fixture of ``bot.rosey.testing`` (real plugin processes, the bot's router, storage
and the HTTP gateway), waiting on messages, never sleeping.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.rosey.core.event_bus import EventBus, Subscription
from bot.rosey.core.events import Event

EXAMPLES = Path(__file__).resolve().parents[2] / "bot" / "rosey" / "plugins" / "examples"


class Inbox:
    """Every event published on ``subject``, to wait for (``await inbox.next()``)."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.seen: list[Event] = []
        self._sub: Subscription | None = None

    @classmethod
    async def open(cls, bus: EventBus, subject: str) -> Inbox:
        inbox = cls()

        async def keep(event: Event) -> None:
            inbox.seen.append(event)
            inbox.events.put_nowait(event)

        inbox._sub = await bus.subscribe(subject, keep)
        await bus.flush()
        return inbox

    async def next(self, timeout: float = 15.0) -> Event:
        async with asyncio.timeout(timeout):
            return await self.events.get()

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()


def user(name: str) -> dict[str, Any]:
    """A chat user as adapters send it."""
    return {"id": name, "name": name, "username": name}


# The whole bot (RoseyApp, its embedded nats-server with per-plugin identities, the sandbox), as
# an operator runs it: for what only real NATS permissions and rosey.toml show.
from tests.security.conftest import start_rosey  # noqa: E402, F401 - a fixture, re-exported
