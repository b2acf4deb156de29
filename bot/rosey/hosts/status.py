"""What the CLI needs to know about remote plugins, read from a status row alone."""

from __future__ import annotations

from bot.rosey.broker.identities import CORE_INBOX_PREFIX
from bot.rosey.broker.leaf import host_inbox_prefix
from bot.rosey.supervision.status import PluginStatus

__all__ = ["CORE_INBOX_PREFIX", "host_inbox_prefix", "unreachable_reason"]

_UNREACHABLE = ("(lost)", "(waiting)")


def unreachable_reason(status: PluginStatus) -> str | None:
    """ "is on host 'b', which is unreachable" when the hub's row says its host is lost or has not
    connected (the registry marks the host column so); None otherwise."""
    host = status.host or ""
    if not host.endswith(_UNREACHABLE):
        return None
    return f"is on host '{host.rsplit(' ', 1)[0]}', which is unreachable"
