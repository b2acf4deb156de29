"""``[hub]``, ``[hosts.NAME]`` (the hub's rosey.toml) and ``[host]`` (a ``rosey host``'s own file).

The hub declares each host and the plugins it runs: that list is the host's ceiling on the hub's
NATS server (its leaf user may carry only those plugins' subjects), so it lives on the hub, never
in the host's file. The host's ``[host]`` table says who it is, where the hub is and where the
credentials the hub wrote for it are; its ``[plugins.*]`` tables are the ordinary ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from bot.rosey.core.subjects import validate_plugin_name
from bot.rosey.errors import ConfigError, InvalidSubject

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_HUB_NAME",
    "DEFAULT_LEAF_LISTEN",
    "HUB_SIDE_KEYS",
    "ClusterConfig",
    "HostEntry",
    "HostSideConfig",
    "HubConfig",
    "parse_cluster",
]

DEFAULT_HUB_NAME = "hub"
DEFAULT_LEAF_LISTEN = "127.0.0.1:7422"  # nats-server's own default leaf port
#: A host silent this long is "lost": three missed heartbeats (one a second).
DEFAULT_HEARTBEAT_TIMEOUT = 3.0
DEFAULT_HEARTBEAT_INTERVAL = 1.0
#: s-remote: what the hub applies to a plugin wherever it runs (its router: who may run it, its
#: command timeout; its services: storage, HTTP gateway, files), so the hub's ``[plugins.NAME]``
#: says them for a plugin on a host, and the host's file may not (one place of truth).
HUB_SIDE_KEYS = ("storage", "http", "files", "platforms", "channels", "min_role", "command_timeout")
_HOST_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _fail(key: str, reason: str) -> ConfigError:
    return ConfigError(f"{key}: {reason}", key=key)


def _host_name(key: str, name: object) -> str:
    if not isinstance(name, str) or not _HOST_NAME.fullmatch(name):
        raise _fail(key, f"a host name is lowercase letters, digits and '_' (at most 32), got {name!r}")
    return name


def _seconds(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise _fail(key, f"must be seconds in (0, 3600], got {value!r}")
    return float(value)


def _known(table: Mapping[str, Any], allowed: tuple[str, ...], key: str) -> None:
    for name in table:
        if name not in allowed:
            raise _fail(f"{key}.{name}", f"unknown key (known: {', '.join(allowed)})")


def _plugin_names(key: str, plugins: object) -> None:
    if not isinstance(plugins, tuple | list) or not all(isinstance(p, str) for p in plugins):
        raise _fail(key, f"must be a list of plugin names, got {plugins!r}")
    for plugin in plugins:
        try:
            validate_plugin_name(plugin)
        except InvalidSubject as exc:
            raise _fail(key, str(exc)) from None


def _file(key: str, value: object, base: Path) -> Path:
    """s-spread: a file named in the config (relative to the config's directory) that must exist."""
    if not isinstance(value, str) or not value:
        raise _fail(key, f"must be a path, got {value!r}")
    path = (base / Path(value).expanduser()).resolve()
    if not path.is_file():
        raise _fail(key, f"no such file: {path}")
    return path


def _table(value: object, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(key, f"must be a table, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class HubConfig:
    """``[hub]``: this bot's name in ``rosey status`` and where hosts' leaf connections arrive.

    ``leaf_listen`` is ``address:port``; port 0 lets the server choose (tests; the runtime file
    then says which). On one machine keep 127.0.0.1; across machines, an address hosts can reach.
    """

    name: str = DEFAULT_HUB_NAME
    leaf_listen: str = DEFAULT_LEAF_LISTEN
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    # --- s-spread: plugins listed for hosts that the hub runs too (its own [plugins.NAME] table);
    # TLS on the leaf port (both files, or neither).
    also_runs: tuple[str, ...] = ()
    leaf_tls_cert: Path | None = None
    leaf_tls_key: Path | None = None
    # --- end s-spread

    def __post_init__(self) -> None:
        _host_name("hub.name", self.name)
        # --- s-spread
        _plugin_names("hub.also_runs", self.also_runs)
        object.__setattr__(self, "also_runs", tuple(dict.fromkeys(self.also_runs)))
        if (self.leaf_tls_cert is None) != (self.leaf_tls_key is None):
            missing = "hub.leaf_tls_key" if self.leaf_tls_key is None else "hub.leaf_tls_cert"
            raise _fail(missing, "TLS on the leaf port needs both leaf_tls_cert and leaf_tls_key")
        # --- end s-spread
        address, sep, port = self.leaf_listen.rpartition(":") if isinstance(self.leaf_listen, str) else "::"
        if not sep or not address or not port.isdigit() or int(port) > 65535:
            raise _fail("hub.leaf_listen", f"must be 'address:port' (port 0: any), got {self.leaf_listen!r}")
        object.__setattr__(
            self, "heartbeat_timeout", _seconds("hub.heartbeat_timeout", self.heartbeat_timeout)
        )

    @property
    def leaf_address(self) -> str:
        return self.leaf_listen.rpartition(":")[0]

    @property
    def leaf_port(self) -> int:
        """The port for nats-server: -1 (any free one) for 0."""
        port = int(self.leaf_listen.rpartition(":")[2])
        return port or -1


@dataclass(frozen=True, kw_only=True)
class HostEntry:
    """``[hosts.NAME]`` on the hub: a host and the plugins it runs (its ceiling)."""

    name: str
    plugins: tuple[str, ...]

    def __post_init__(self) -> None:
        key = f"hosts.{self.name}"
        _host_name(key, self.name)
        if not isinstance(self.plugins, tuple | list) or not self.plugins:
            raise _fail(f"{key}.plugins", "must list the plugins this host runs, e.g. ['weather']")
        _plugin_names(f"{key}.plugins", self.plugins)
        object.__setattr__(self, "plugins", tuple(dict.fromkeys(self.plugins)))


@dataclass(frozen=True, kw_only=True)
class HostSideConfig:
    """``[host]`` in a ``rosey host``'s file: its name, the hub's leaf URL, the credentials file."""

    name: str
    hub: str  # nats-leaf://address:port, without credentials (those are in `credentials`)
    credentials: Path
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    ca: Path | None = None  # s-spread: verify the hub's leaf TLS certificate against this CA

    def __post_init__(self) -> None:
        _host_name("host.name", self.name)
        parts = urlsplit(self.hub) if isinstance(self.hub, str) else None
        try:
            ok = (
                parts is not None
                and parts.scheme == "nats-leaf"
                and bool(parts.hostname)
                and bool(parts.port)
            )
        except ValueError:
            ok = False
        if not ok or parts is None:
            raise _fail(
                "host.hub", f"must be a URL like 'nats-leaf://hub.example.org:7422', got {self.hub!r}"
            )
        if parts.username or parts.password:
            raise _fail(
                "host.hub", "must not carry credentials: put them in the file named by host.credentials"
            )
        if not isinstance(self.credentials, Path) or not self.credentials.is_absolute():
            raise _fail("host.credentials", f"must be a path, got {self.credentials!r}")
        object.__setattr__(
            self, "heartbeat_interval", _seconds("host.heartbeat_interval", self.heartbeat_interval)
        )


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """What a rosey.toml says about several machines: nothing (one machine) by default."""

    hub: HubConfig = field(default_factory=HubConfig)
    hosts: Mapping[str, HostEntry] = field(default_factory=dict, hash=False)
    host: HostSideConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", MappingProxyType(dict(self.hosts)))
        # s-spread: a plugin listed for several hosts is spread over them (one queue group).
        remote = self.remote_plugins
        for plugin in self.hub.also_runs:
            if plugin not in remote:
                raise _fail(
                    "hub.also_runs",
                    f"plugin {plugin!r} is not listed for any host; a plugin only on the hub needs only "
                    "its [plugins.NAME] table",
                )
        if self.hub.name in self.hosts:
            raise _fail(f"hosts.{self.hub.name}", f"{self.hub.name!r} is the hub's own name ([hub] name)")

    def host_of(self, plugin: str) -> str | None:
        """The (first) host that runs ``plugin``, or None when it is not a remote plugin."""
        hosts = self.hosts_of(plugin)
        return hosts[0] if hosts else None

    def hosts_of(self, plugin: str) -> tuple[str, ...]:
        """s-spread: every host that runs ``plugin`` (its replicas on each), in the file's order."""
        return tuple(entry.name for entry in self.hosts.values() if plugin in entry.plugins)

    def is_spread(self, plugin: str) -> bool:
        """s-spread: ``plugin`` runs on more than one machine (several hosts, or hosts and the hub)."""
        return len(self.hosts_of(plugin)) + (plugin in self.hub.also_runs) > 1

    @property
    def remote_plugins(self) -> dict[str, str]:
        """Remote plugin -> its (first) host."""
        plugins: dict[str, str] = {}
        for entry in self.hosts.values():
            for plugin in entry.plugins:
                plugins.setdefault(plugin, entry.name)
        return plugins


def parse_cluster(hub: object, hosts: object, host: object, base: Path) -> ClusterConfig:
    """The ``[hub]``, ``[hosts.*]`` and ``[host]`` tables, validated (paths against ``base``)."""
    hub_table = dict(_table(hub, "hub"))
    _known(
        hub_table,
        ("name", "leaf_listen", "heartbeat_timeout", "also_runs", "leaf_tls_cert", "leaf_tls_key"),
        "hub",
    )
    # --- s-spread
    if "also_runs" in hub_table:
        _plugin_names("hub.also_runs", hub_table["also_runs"])
        hub_table["also_runs"] = tuple(hub_table["also_runs"])
    for key in ("leaf_tls_cert", "leaf_tls_key"):
        if key in hub_table:
            hub_table[key] = _file(f"hub.{key}", hub_table[key], base)
    # --- end s-spread
    entries: dict[str, HostEntry] = {}
    for name, table in _table(hosts, "hosts").items():
        table = _table(table, f"hosts.{name}")
        _known(table, ("plugins",), f"hosts.{name}")
        plugins = table.get("plugins")
        _plugin_names(f"hosts.{name}.plugins", plugins)
        assert isinstance(plugins, list | tuple)
        entries[name] = HostEntry(name=name, plugins=tuple(plugins))
    side: HostSideConfig | None = None
    if host is not None:
        table = _table(host, "host")
        _known(table, ("name", "hub", "credentials", "heartbeat_interval", "ca"), "host")
        for required in ("name", "hub", "credentials"):
            if required not in table:
                raise _fail(f"host.{required}", "is required in a rosey host's [host] table")
        credentials = table["credentials"]
        if not isinstance(credentials, str) or not credentials:
            raise _fail("host.credentials", f"must be a path, got {credentials!r}")
        side = HostSideConfig(
            name=table["name"],
            hub=table["hub"],
            credentials=(base / Path(credentials).expanduser()).resolve(),
            heartbeat_interval=table.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL),
            ca=_file("host.ca", table["ca"], base) if "ca" in table else None,  # s-spread
        )
    return ClusterConfig(hub=HubConfig(**hub_table), hosts=entries, host=side)
