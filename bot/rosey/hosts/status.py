"""What the CLI needs to know about remote plugins, read from a status row alone."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bot.rosey.broker.identities import CORE_INBOX_PREFIX
from bot.rosey.broker.leaf import host_inbox_prefix
from bot.rosey.hosts.config import ClusterConfig
from bot.rosey.hosts.denials import UNATTRIBUTED
from bot.rosey.hosts.spread import spread_inbox_prefix
from bot.rosey.supervision.status import PluginStatus
from bot.rosey.terminal import printable

__all__ = [
    "CORE_INBOX_PREFIX",
    "command_inbox_prefix",
    "denial_lines",
    "host_inbox_prefix",
    "plugin_reasons",
    "unreachable_reason",
]

_UNREACHABLE = ("(lost)", "(waiting)")


def unreachable_reason(status: PluginStatus) -> str | None:
    """ "is on host 'b', which is unreachable" when the hub's row says its host is lost or has not
    connected (the registry marks the host column so); None otherwise."""
    host = status.host or ""
    if not host.endswith(_UNREACHABLE):
        return None
    return f"is on host '{host.rsplit(' ', 1)[0]}', which is unreachable"


# --- s-spread


def command_inbox_prefix(cluster: ClusterConfig, plugin: str) -> str:
    """The inbox a CLI on the hub asks ``plugin`` from: the only one its host(s) may answer into."""
    if cluster.is_spread(plugin):
        return spread_inbox_prefix(plugin)
    host = cluster.host_of(plugin)
    return host_inbox_prefix(host) if host else CORE_INBOX_PREFIX


def plugin_reasons(
    rows: Iterable[PluginStatus], reason: Callable[[PluginStatus], str | None]
) -> dict[str, str | None]:
    """Plugin name -> why it cannot take a command (None: it can). A plugin's several rows (replicas,
    on several hosts: the same name more than once) serve while any of them does."""
    reasons: dict[str, str | None] = {}
    for row in rows:
        name, why = row.name.split("#")[0], reason(row)
        if name not in reasons or why is None:
            reasons[name] = why
    return reasons


def denial_lines(hosts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """s-remote: ``host b: 3 messages denied by NATS (last: publish 'rosey.commands.echo.execute')``
    for each host the hub's server refused something, from ``rosey status``'s ``hosts``."""
    lines = []
    for host, row in hosts.items():
        count = row.get("denied_by_nats")
        if not isinstance(count, int) or count <= 0:
            continue
        if host == UNATTRIBUTED:
            why = row.get("why")
            lines.append(
                f"leaf connections: {count} messages denied by NATS, not attributed to a host"
                + (f" ({printable(str(why))})" if why else "")
            )
            continue
        last = row.get("last_denied")
        shown = f" (last: {printable(str(last))})" if last else ""
        lines.append(f"host {printable(host)}: {count} messages denied by NATS{shown}")
    return lines
