"""The hub's part in running plugins on several machines, handed to ``RoseyApp`` as one object.

Before the NATS server starts: each declared host's leaf user (its ceiling) with the credentials
kept in the state directory, and the leaf listener. Once the core is connected: the heartbeat
registry, and one core connection per host whose inbox prefix is that host's, for the router's
commands to its plugins and the control service's actions on them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.rosey.broker.leaf import LeafCredentials, ensure_credentials, host_inbox_prefix, host_permissions
from bot.rosey.broker.nats_server import NatsUser
from bot.rosey.core.event_bus import EventBus
from bot.rosey.hosts.config import ClusterConfig
from bot.rosey.hosts.registry import HostRegistry
from bot.rosey.hosts.remote_control import RemoteControl
from bot.rosey.supervision.status import PluginStatus

__all__ = ["HubSide"]

logger = logging.getLogger(__name__)

#: Makes one more core connection, named, with the given inbox prefix.
Connect = Callable[[str, str], Awaitable[EventBus]]


class HubSide:
    def __init__(self, cluster: ClusterConfig, state_dir: Path) -> None:
        self.cluster = cluster
        self.state_dir = state_dir
        self.credentials: dict[str, LeafCredentials] = {}
        self.registry: HostRegistry | None = None
        self.remote: RemoteControl | None = None
        self.buses: dict[str, EventBus] = {}

    @property
    def leaf_listen(self) -> str:
        hub = self.cluster.hub
        return f"{hub.leaf_address}:{hub.leaf_port}"

    def nats_users(self) -> list[NatsUser]:
        """One leaf user per host, its grants its plugins' subjects; credentials made once, kept."""
        users = []
        for name, entry in self.cluster.hosts.items():
            creds, path = ensure_credentials(self.state_dir, name)
            self.credentials[name] = creds
            logger.info("host %s: its credentials are in %s (copy them to the host, mode 0600)", name, path)
            users.append(
                NatsUser(
                    user=creds.user,
                    password=creds.password,
                    permissions=host_permissions(name, entry.plugins),
                )
            )
        return users

    def announce(self, port: int) -> None:
        """Say where hosts connect, in the log and in ``<state_dir>/hosts/leaf_url`` (for scripts)."""
        url = f"nats-leaf://{self.cluster.hub.leaf_address}:{port}"
        (self.state_dir / "hosts" / "leaf_url").write_text(url + "\n")
        logger.info("hosts connect to %s (%s)", url, ", ".join(self.cluster.hosts))

    async def start(self, core_bus: EventBus, connect: Connect) -> None:
        self.registry = HostRegistry(core_bus, self.cluster.hosts, timeout=self.cluster.hub.heartbeat_timeout)
        await self.registry.start()
        for name in self.cluster.hosts:
            self.buses[name] = await connect(f"rosey-host-{name}", host_inbox_prefix(name))
        self.remote = RemoteControl(self.registry, self.buses)

    async def stop(self) -> None:
        if self.registry is not None:
            await self.registry.stop()
        for bus in self.buses.values():
            with contextlib.suppress(Exception):
                await bus.disconnect()

    # ------------------------------------------------------------------ for the router and status

    def plugins(self) -> list[str]:
        return list(self.cluster.remote_plugins)

    def why_unavailable(self, plugin: str) -> str | None:
        return self.registry.why_unavailable(plugin) if self.registry is not None else None

    def bus_for(self, plugin: str) -> EventBus | None:
        host = self.cluster.host_of(plugin)
        return self.buses.get(host) if host is not None else None

    def rows(self) -> list[PluginStatus]:
        return self.registry.rows() if self.registry is not None else []

    def remote_action(self, action: str, request: Any) -> Awaitable[dict[str, Any]] | None:
        return self.remote(action, request) if self.remote is not None else None
