"""The hub's part in running plugins on several machines, handed to ``RoseyApp`` as one object.

Before the NATS server starts: each declared host's leaf user (its ceiling) with the credentials
kept in the state directory, and the leaf listener. Once the core is connected: the heartbeat
registry, and one core connection per host whose inbox prefix is that host's, for the router's
commands to its plugins and the control service's actions on them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from bot.rosey.broker.leaf import LeafCredentials, ensure_credentials, host_inbox_prefix, host_permissions
from bot.rosey.broker.nats_server import NatsUser
from bot.rosey.core.event_bus import EventBus
from bot.rosey.hosts.config import ClusterConfig
from bot.rosey.hosts.registry import HostRegistry, HostState
from bot.rosey.hosts.remote_control import RemoteControl
from bot.rosey.hosts.spread import LossHandler, held_by, spread_inbox_prefix
from bot.rosey.supervision.spec import PluginSpec
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
        # s-spread: a plugin on several machines is asked from a connection of its own, whose
        # inbox every host carrying it may answer into; the hub's reaction to a lost host.
        self.spread_buses: dict[str, EventBus] = {}
        self.loss: LossHandler | None = None

    @property
    def leaf_listen(self) -> str:
        hub = self.cluster.hub
        return f"{hub.leaf_address}:{hub.leaf_port}"

    @property
    def leaf_tls(self) -> tuple[Path, Path] | None:
        """s-spread: the leaf port's certificate and key (None: plain TCP)."""
        hub = self.cluster.hub
        return (hub.leaf_tls_cert, hub.leaf_tls_key) if hub.leaf_tls_cert and hub.leaf_tls_key else None

    def nats_users(self) -> list[NatsUser]:
        """One leaf user per host, its grants its plugins' subjects; credentials made once, kept."""
        users = []
        for name, entry in self.cluster.hosts.items():
            creds, path = ensure_credentials(self.state_dir, name)
            self.credentials[name] = creds
            logger.info("host %s: its credentials are in %s (copy them to the host, mode 0600)", name, path)
            permissions = host_permissions(name, entry.plugins)
            # s-spread: answers to a spread plugin's commands, whichever of its hosts took them.
            permissions["publish"]["allow"] += [
                f"{spread_inbox_prefix(p)}.>" for p in entry.plugins if self.cluster.is_spread(p)
            ]
            users.append(NatsUser(user=creds.user, password=creds.password, permissions=permissions))
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
        self.remote = RemoteControl(self.registry, self.buses, local=self.cluster.hub.also_runs)
        for plugin in self.spread_plugins():  # s-spread
            self.spread_buses[plugin] = await connect(f"rosey-spread-{plugin}", spread_inbox_prefix(plugin))

    def attach(
        self, in_flight: Callable[[str, float], set[str]], local_plugins: Callable[[], Mapping[str, object]]
    ) -> None:
        """s-spread: once the router and supervisor exist: end a lost host's commands at once.

        ``in_flight(plugin, sent_before)`` is the router's; ``local_plugins()`` the supervisor's
        processes (the hub's own replicas of ``[hub] also_runs`` plugins, and what they hold)."""
        registry = self.registry
        assert registry is not None
        self.loss = LossHandler(
            core=registry.bus,
            buses=self.buses,
            hosts_of=registry.hosts_of,
            plugins_of=lambda host: self.cluster.hosts[host].plugins,
            connected=lambda host: registry.state(host) is HostState.CONNECTED,
            in_flight=in_flight,
            local_held=lambda plugin: held_by(local_plugins(), plugin),
            also_runs=self.cluster.hub.also_runs,
            margin=self.cluster.hub.heartbeat_timeout / 3,
        )
        registry.on_lost = self.loss

    def spread_plugins(self) -> list[str]:
        return [p for p in self.cluster.remote_plugins if self.cluster.is_spread(p)]

    def local_specs(self, specs: Iterable[PluginSpec]) -> list[PluginSpec]:
        """s-spread: the hub's own processes of a spread plugin keep a command ledger (as replicas
        do), so their crash names only the commands they held, not the hosts' ones too."""
        also = self.cluster.hub.also_runs
        return [
            dataclasses.replace(s, replica=1) if s.name in also and s.replica is None else s for s in specs
        ]

    async def stop(self) -> None:
        if self.loss is not None:
            await self.loss.stop()
        if self.registry is not None:
            await self.registry.stop()
        for bus in [*self.buses.values(), *self.spread_buses.values()]:
            with contextlib.suppress(Exception):
                await bus.disconnect()

    # ------------------------------------------------------------------ for the router and status

    def plugins(self) -> list[str]:
        """Plugins only on hosts (``also_runs`` ones are the supervisor's names already)."""
        return [p for p in self.cluster.remote_plugins if p not in self.cluster.hub.also_runs]

    def why_unavailable(self, plugin: str, local: Callable[[str], str | None] | None = None) -> str | None:
        """Why ``plugin`` cannot take a command now (None: it can), ``local`` the supervisor's
        answer for the hub's own processes. s-spread: a plugin on the hub and on hosts is
        unavailable only when it is unavailable everywhere."""
        here = local(plugin) if local is not None else None
        if self.registry is None or self.registry.host_of(plugin) is None:
            return here
        remote = self.registry.why_unavailable(plugin)
        if plugin in self.cluster.hub.also_runs:
            return None if here is None or remote is None else here
        return here or remote

    def bus_for(self, plugin: str) -> EventBus | None:
        if (bus := self.spread_buses.get(plugin)) is not None:  # s-spread
            return bus
        host = self.cluster.host_of(plugin)
        return self.buses.get(host) if host is not None else None

    def rows(self) -> list[PluginStatus]:
        return self.registry.rows() if self.registry is not None else []

    def remote_action(self, action: str, request: Any) -> Awaitable[dict[str, Any]] | None:
        return self.remote(action, request) if self.remote is not None else None
