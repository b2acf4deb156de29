"""``!rosey ...`` in chat: the operator's commands, for the bot's admins only.

``!rosey status`` (one line per plugin and adapter), ``!rosey restart NAME``, ``!rosey stop NAME``,
``!rosey start NAME`` and ``!rosey help``. Who is an admin is the router's question
(:class:`~bot.rosey.services.access.AccessPolicy`); this module only carries the command out on
the supervisor, exactly as ``rosey restart`` does from a shell.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.rosey.core.chat import ChatEvent
from bot.rosey.errors import RoseyError
from bot.rosey.supervision.status import RoseyStatus
from bot.rosey.supervision.supervisor import Supervisor

__all__ = ["ChatAdmin"]

_USAGE = "usage: !rosey status | restart NAME | stop NAME | start NAME"


class ChatAdmin:
    """Callable as the router's admin command: ``await admin(event, args)`` -> the reply."""

    def __init__(self, supervisor: Supervisor, status: Callable[[], RoseyStatus], prefix: str = "!") -> None:
        self.supervisor = supervisor
        self._status = status
        self.usage = _USAGE.replace("!", prefix, 1)

    async def __call__(self, event: ChatEvent, args: list[str]) -> str:
        if not args or args[0] in ("help", "-h", "--help"):
            return self.usage
        action, *rest = args
        if action == "status" and not rest:
            return self._summary()
        if action in ("restart", "stop", "start") and len(rest) == 1:
            name = rest[0]
            try:
                await getattr(self.supervisor, action)(name)
            except RoseyError as exc:
                return f"⚠️ {exc}"
            past = {"restart": "restarted", "stop": "stopped", "start": "started"}[action]
            return f"{name}: {past} (asked by {event.user.name} on {event.platform})"
        return self.usage

    def _summary(self) -> str:
        status = self._status()
        parts = []
        for row in status.plugins:
            detail = f"{row.name} ({row.kind}) {row.state.value}"
            if row.restarts:
                detail += f", {row.restarts} restart{'s' if row.restarts != 1 else ''}"
            if row.memory_mb is not None:
                detail += f", {row.memory_mb:g} MB"
            parts.append(detail)
        return f"Rosey up {status.uptime_seconds:.0f} s: " + "; ".join(parts)
