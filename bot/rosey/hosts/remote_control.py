"""The hub's side of ``rosey restart|start|stop|logs NAME`` for a plugin on another host.

The hub's control service hands every action on a remote plugin here; it goes to the host's
control subject (``rosey.hosts.<host>.control.<action>``) on the hub's connection for that host
(its inbox is the only one the host may answer into), and the host's answer comes back as is.
A lost host is refused at once, in the same words as the router's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Mapping
from typing import Any

from bot.rosey.broker.leaf import host_control_subject
from bot.rosey.core.event_bus import EventBus
from bot.rosey.errors import RoseyError
from bot.rosey.hosts.registry import HostRegistry, HostState

__all__ = ["RemoteControl"]

SOURCE = "rosey-control"
#: A restart on the host waits for the plugin to stop (up to its grace) and to be ready again.
_SLOW_ACTIONS = {"start": 55.0, "stop": 55.0, "restart": 55.0}


class RemoteControl:
    """Forwards control actions on remote plugins; ``buses`` is host -> the hub's connection for it."""

    def __init__(
        self, registry: HostRegistry, buses: Mapping[str, EventBus], *, local: Collection[str] = ()
    ) -> None:
        self.registry = registry
        self.buses = dict(buses)
        self.local = frozenset(local)  # s-spread: [hub] also_runs: the hub's control acts on its own

    def __call__(self, action: str, request: Mapping[str, Any]) -> Awaitable[dict[str, Any]] | None:
        name = request.get("name")
        if not isinstance(name, str) or name.split("#")[0] in self.local:
            return None
        hosts = [h for h in self.registry.hosts_of(name.split("#")[0]) if h in self.buses]
        if not hosts:
            return None
        if len(hosts) > 1:  # s-spread
            return self._forward_all(hosts, name, action, request)
        return self._forward(hosts[0], str(name), action, request)

    async def _forward_all(
        self, hosts: list[str], name: str, action: str, request: Mapping[str, Any]
    ) -> dict[str, Any]:
        """s-spread: a plugin on several hosts. Lifecycle actions go to each connected host in turn
        (so the others serve meanwhile); ``logs`` to the first connected one."""
        reachable = [h for h in hosts if self.registry.state(h) is HostState.CONNECTED]
        if not reachable:
            listed = ", ".join(f"'{h}'" for h in hosts)
            raise RoseyError(f"plugin '{name}' is on hosts {listed}, which are unreachable")
        if action not in _SLOW_ACTIONS:
            return await self._forward(reachable[0], name, action, request)
        answer: dict[str, Any] = {}
        for host in reachable:
            answer = await self._forward(host, name, action, request)
        return answer

    async def _forward(self, host: str, name: str, action: str, request: Mapping[str, Any]) -> dict[str, Any]:
        if self.registry.state(host) is not HostState.CONNECTED:
            raise RoseyError(f"plugin '{name}' is on host '{host}', which is unreachable")
        reply = await self.buses[host].request(
            host_control_subject(host, action),
            dict(request),
            SOURCE,
            timeout=_SLOW_ACTIONS.get(action, 5.0),
        )
        data = dict(reply.data)
        if not data.pop("ok", False):
            raise RoseyError(f"host '{host}': {data.get('error', 'refused')}")
        if isinstance(data.get("plugin"), dict):
            data["plugin"] = {**data["plugin"], "host": host}
        return data
