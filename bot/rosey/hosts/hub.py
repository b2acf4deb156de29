"""The hub's part in running plugins on several machines, handed to ``RoseyApp`` as one object.

Before the NATS server starts: each declared host's leaf user (its ceiling) with the credentials
kept in the state directory, and the leaf listener. Once the core is connected: the heartbeat
registry, and one core connection per host whose inbox prefix is that host's, for the router's
commands to its plugins and the control service's actions on them.

s-remote: what the hub applies to a remote plugin is said in the hub's own ``[plugins.NAME]``
(:meth:`HubSide.plugin_configs`: its services' grants, who may run it), the commands its host
reports are ``!help``'s (:attr:`HubSide.declared`), and the server's leaf denials are attributed
to hosts (:class:`~bot.rosey.hosts.denials.LeafDenials`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from bot.rosey.broker.leaf import (
    LeafCredentials,
    ensure_credentials,
    host_inbox_prefix,
    host_permissions,
    host_user,
)
from bot.rosey.broker.nats_server import NatsServer, NatsUser
from bot.rosey.config import PluginConfig, RoseyConfig
from bot.rosey.core.event_bus import EventBus
from bot.rosey.hosts.config import ClusterConfig
from bot.rosey.hosts.declared import write_commands_file
from bot.rosey.hosts.denials import UNATTRIBUTED, LeafDenials
from bot.rosey.hosts.registry import HostRegistry, HostState
from bot.rosey.hosts.remote_control import RemoteControl
from bot.rosey.hosts.spread import LossHandler, spread_inbox_prefix
from bot.rosey.plugins.declared_commands import PluginCommands
from bot.rosey.services.replica_barrier import BarrierScope, BarrierVerdict
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
        # s-remote: remote plugin -> its declared commands, as its host last said (for !help).
        self.declared: dict[str, PluginCommands] = {}
        self.denials: LeafDenials | None = None

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

    async def start(self, core_bus: EventBus, connect: Connect, server: NatsServer | None = None) -> None:
        if server is not None:  # s-remote: leaf denials, attributed to hosts
            users = {host_user(name): name for name in self.cluster.hosts}
            self.denials = LeafDenials(server.monitor_url, users)
            self.denials.start()
            server.on_leaf_violation = self.denials.record
        self.registry = HostRegistry(core_bus, self.cluster.hosts, timeout=self.cluster.hub.heartbeat_timeout)
        self.registry.declared = self.declared  # s-remote: one dict, filled by the registry
        self.registry.on_commands = self._keep_commands
        await self.registry.start()
        for name in self.cluster.hosts:
            self.buses[name] = await connect(f"rosey-host-{name}", host_inbox_prefix(name))
        self.remote = RemoteControl(self.registry, self.buses, local=self.cluster.hub.also_runs)
        for plugin in self.spread_plugins():  # s-spread
            self.spread_buses[plugin] = await connect(f"rosey-spread-{plugin}", spread_inbox_prefix(plugin))

    def attach(
        self,
        in_flight: Callable[[str, float], set[str]],
        verdict: Callable[[str, tuple[str, ...]], Awaitable[BarrierVerdict]],
    ) -> None:
        """s-spread: once the router exists: end a lost host's commands at once.

        ``in_flight(plugin, sent_before)`` and ``verdict(plugin, ids)`` (its barrier through the
        plugin's surviving processes, see :meth:`barrier_scope`) are the router's."""
        registry = self.registry
        assert registry is not None
        self.loss = LossHandler(
            core=registry.bus,
            plugins_of=lambda host: self.cluster.hosts[host].plugins,
            in_flight=in_flight,
            verdict=verdict,
        )
        registry.on_lost = self.loss

    def barrier_scope(self, plugin: str) -> BarrierScope:
        """Where the router's barrier asks after one of ``plugin``'s processes died (or its host was
        lost): its replica numbers on the hub's server when the hub runs it (a local plugin, or
        ``[hub] also_runs``), and each connected host carrying it."""
        here = plugin not in self.cluster.remote_plugins or plugin in self.cluster.hub.also_runs
        registry = self.registry
        if registry is None:
            return BarrierScope(here=here)
        hosts = tuple(h for h in registry.hosts_of(plugin) if registry.state(h) is HostState.CONNECTED)
        return BarrierScope(here=here, hosts=hosts)

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
        if self.denials is not None:
            await self.denials.stop()
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

    # ------------------------------------------------------------------ s-remote

    def plugin_configs(self, config: RoseyConfig) -> dict[str, PluginConfig]:
        """Each remote plugin's ``[plugins.NAME]`` in the hub's file (or the defaults): what the
        hub's router and services apply to it, exactly as to a plugin of its own."""
        return {name: config.plugin(name) for name in self.cluster.remote_plugins}

    def hosts_status(self) -> dict[str, dict[str, Any]]:
        """Per host: its state and what the hub's NATS server refused it (``rosey status``)."""
        hosts: dict[str, dict[str, Any]] = {}
        for name in self.cluster.hosts:
            row: dict[str, Any] = {"state": self.registry.state(name).value if self.registry else "waiting"}
            denied = self.denials.of(name) if self.denials is not None else None
            if denied is not None:
                row["denied_by_nats"] = denied.count
                row["last_denied"] = denied.last
            hosts[name] = row
        if self.denials is not None and self.denials.unattributed:
            why = self.denials.why_unattributed
            hosts[UNATTRIBUTED] = {"denied_by_nats": self.denials.unattributed, "why": why}
        return hosts

    def _keep_commands(self, host: str, declared: Mapping[str, PluginCommands]) -> None:
        """For ``rosey plugins list`` on the hub, which reads no plugin of a host."""
        try:
            write_commands_file(self.state_dir, host, declared)
        except OSError as exc:
            logger.warning("host %s: its plugins' commands not kept for `rosey plugins list`: %s", host, exc)
