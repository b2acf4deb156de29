"""``rosey.toml``: load it, validate every key, and turn it into frozen configuration objects.

Why so strict: a typo in a sandbox limit (``max_memory_mb = "256"``, ``max_memroy_mb = 256``)
must stop Rosey at start-up with a message naming the file, the dotted key and the reason,
not silently run a plugin with the default. So unknown keys are errors, ``true`` is not an
integer, and every relative path is resolved against the config file's directory (never the
current directory, which differs between ``rosey run`` from a shell, a unit file and a test).

The dataclasses validate themselves in ``__post_init__`` (so programmatic construction is held
to the same rules); their messages name the dotted key, and :func:`load_config` prefixes the file.
``ROSEY_STATE_DIR``, when set, overrides ``[rosey].state_dir`` (tests and packagers rely on it);
``ROSEY_LAUNCHER``, when set, overrides ``[rosey].launcher`` (e.g. to run a bot or a test suite on spawn).
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from bot.rosey.chat_config import (
    AdapterConfig,
    ChatConfig,
    SecretSource,
    parse_adapters,
    parse_chat,
    parse_command_access,
    parse_secrets,
)
from bot.rosey.core.subjects import validate_plugin_name
from bot.rosey.errors import ConfigError, ProgramNotRunnable
from bot.rosey.files_config import parse_file_limits
from bot.rosey.gateway_config import parse_http_grants
from bot.rosey.hosts.config import (  # s-host: [hub], [hosts.*], [host]
    HUB_SIDE_KEYS,  # s-remote
    ClusterConfig,
    parse_cluster,
)
from bot.rosey.plugins.process.foreign import resolve_program
from bot.rosey.plugins.process.launchers import LAUNCHER_ENV, Launcher
from bot.rosey.services.access import CommandAccess  # re-exported: `[rosey] launcher`
from bot.rosey.storage_config import parse_storage_limits
from bot.rosey.supervision.spec import DEFAULT_CPU_WINDOW_SECONDS, MAX_REPLICAS, Limits, RestartPolicy
from bot.rosey.web_config import WebConfig, parse_web

__all__ = [
    "CONFIG_FILENAME",
    "LAUNCHER_ENV",
    "LOG_LEVELS",
    "STATE_DIR_ENV",
    "AdapterConfig",
    "ChatConfig",
    "Launcher",
    "PluginConfig",
    "RoseyConfig",
    "SandboxMode",
    "WebConfig",
    "env_name_problem",
    "example_config",
    "load_config",
    "plugin_keys_set",  # s-remote
    "subject_problem",
]

CONFIG_FILENAME = "rosey.toml"
STATE_DIR_ENV = "ROSEY_STATE_DIR"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_COMMAND_TIMEOUT = 10.0
#: nats-server's own default for the largest message (a command, a result) and its hard ceiling.
DEFAULT_MAX_PAYLOAD = 1024 * 1024
MAX_PAYLOAD_CEILING = 64 * 1024 * 1024
# What a plugin may send into NATS, per second. The echo example at the most commands/s the core
# sends (each answered on two subjects) publishes 32-45k messages per second since issue 17's
# faster command path (it was ~24k; measured by tests/security/test_bus_flood.py's busy-plugin
# test, 2026-12-02), and ~6-10 MB; one Python process flooding reaches 100k-550k small messages or
# 300-800 MB per second. 50k killed that busy echo once in CI: twice its rate is the limit now.
DEFAULT_MAX_PUBLISH_RATE = 100_000.0
DEFAULT_MAX_PUBLISH_BYTES_RATE = 50_000_000.0
# Each subscription is a copy of every matching message; the SDK holds 3, a plugin listening to
# chat events one or a few more.
DEFAULT_MAX_SUBSCRIPTIONS = 1_000

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE = re.compile(rf"{_IDENT}(\.{_IDENT})*(:{_IDENT}(\.{_IDENT})*)?")
_NATS_SCHEMES = ("nats", "tls", "ws", "wss")


class SandboxMode(StrEnum):
    """``strict``: refuse to start a plugin whose sandbox cannot be fully applied on this kernel;
    ``best-effort``: apply what the kernel supports and report what is missing."""

    STRICT = "strict"
    BEST_EFFORT = "best-effort"


# ------------------------------------------------------------------------ validation helpers


def _dotted(*parts: str) -> str:
    """A dotted TOML key, quoting the parts that are not bare keys (so ``plugins."a.b"`` stays exact)."""
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in parts)


def _fail(key: str, reason: str) -> ConfigError:
    return ConfigError(f"{key}: {reason}", key=key)


def _int(key: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise _fail(key, f"must be {what}, got {value!r}")
    return value


def _float(key: str, value: object, *, maximum: float | None = None) -> float:
    """A positive finite number; ints are welcome where floats are expected, bools are not."""
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not (math.isfinite(number) and number > 0 and (maximum is None or number <= maximum)):
        bound = f" and at most {maximum:g}" if maximum is not None else ""
        raise _fail(key, f"must be a positive number{bound}, got {value!r}")
    return number


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, f"must be true or false, got {value!r}")
    return value


def _enum(key: str, enum: type[SandboxMode] | type[RestartPolicy] | type[Launcher], value: object) -> Any:
    for member in enum:
        if value == member.value:  # a member equals its value too (StrEnum)
            return member
    raise _fail(key, f"must be one of {', '.join(repr(m.value) for m in enum)}, got {value!r}")


def _strings(key: str, value: object, check: Callable[[str], str | None] | None = None) -> tuple[str, ...]:
    """A list of non-empty strings; ``check(item)`` returns why an item is wrong, or None."""
    if not isinstance(value, (list, tuple)):
        raise _fail(key, f"must be a list of strings, got {value!r}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            reason: str | None = "must be a non-empty string"
        else:
            reason = check(item) if check is not None else None
        if reason:
            raise _fail(f"{key}[{index}]", f"{reason}, got {item!r}")
    return tuple(value)


def _paths(key: str, value: object) -> tuple[Path, ...]:
    if not isinstance(value, (list, tuple)):
        raise _fail(key, f"must be a list of paths, got {value!r}")
    for index, item in enumerate(value):
        if not isinstance(item, Path) or not item.is_absolute():
            raise _fail(f"{key}[{index}]", f"must be an absolute path, got {item!r}")
    return tuple(value)


def env_name_problem(name: str) -> str | None:
    """Why ``name`` is no environment variable name, or None (also for declared requests)."""
    return None if _ENV_NAME.fullmatch(name) else "must be an environment variable name"


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` is not usable in a NATS permission (non-empty tokens, ``*``/``>`` whole
    tokens, ``>`` last), or None; declared requests are checked with it too."""
    tokens = subject.split(".")
    for position, token in enumerate(tokens):
        if (
            not token
            or any(c.isspace() for c in token)
            or (("*" in token or ">" in token) and token not in ("*", ">"))
            or (token == ">" and position != len(tokens) - 1)
        ):
            return "must be a NATS subject (tokens separated by '.', '*' or a final '>' as wildcards)"
    return None


def _subscribe_grant(subject: str) -> str | None:
    """A subscribe grant; one ending in ``*`` is refused.

    nats-server lets an allow of ``a.b.*`` subscribe to ``a.b.>`` too, and a deny of ``a.b.>``
    would also block ``a.b.*`` itself: no grant means "exactly one more level". Exact subjects
    or an explicit ``>`` say what they give.
    """
    if reason := subject_problem(subject):
        return reason
    if subject.split(".")[-1] == "*":
        stem = subject[:-1]
        return (
            f"must not end in '*': NATS would also allow subscribing to '{stem}>' and everything "
            f"below it; list the exact subjects, or grant '{stem}>' if that is what you mean"
        )
    return None


def _host_port(entry: str) -> str | None:
    host, sep, port = entry.rpartition(":")
    if not sep or host in ("", "[]"):
        return "must be 'host:port' with a non-empty host"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return "must be 'host:port' with a port in 1..65535"
    return None


def _check_nats_url(key: str, url: object) -> None:
    ok = isinstance(url, str) and bool(url)
    if ok:
        parts = urlsplit(str(url))
        try:
            ok = parts.scheme in _NATS_SCHEMES and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a port that is not a number
            ok = False
    if not ok:
        raise _fail(
            key, f"must be a URL like 'nats://127.0.0.1:4222' ({'|'.join(_NATS_SCHEMES)}), got {url!r}"
        )


def _check_monitor_url(key: str, url: object) -> None:
    ok = isinstance(url, str)
    if ok:
        parts = urlsplit(str(url))
        try:
            ok = parts.scheme == "http" and bool(parts.hostname) and parts.port not in (None, 0)
        except ValueError:  # a port that is not a number
            ok = False
        ok = ok and not parts.query and not parts.fragment
    if not ok:
        raise _fail(key, f"must be a URL like 'http://127.0.0.1:8222' (a NATS monitoring port), got {url!r}")


# ------------------------------------------------------------------------ configuration objects


# Integer limits of PluginConfig and their minimum. Below 16 open files the interpreter and its
# NATS connection cannot start; below 32 MB an idle plugin (~25 MB resident) is killed at once.
_PLUGIN_INTS = dict(
    max_concurrency=1,
    replicas=1,  # issue 16
    max_memory_mb=32,
    max_open_files=16,
    max_processes=0,
    max_threads=1,
    max_disk_mb=1,
    max_subscriptions=8,  # the SDK holds 3 (commands, pings, its reply inbox)
)

#: The default disk quota of a plugin's data dir. The same as the one-file limit (RLIMIT_FSIZE,
#: 1 GiB) plugins always had, so whatever fitted in one file still fits; roomy for a database, a
#: cache or some media; and a dozen plugins together stay well short of filling a small server.
DEFAULT_MAX_DISK_MB = 1024
# Output read per second, and its minimum: a plugin's own start-up lines and a traceback must fit
# (the budget also allows bursts of 5 s worth).
_OUTPUT_RATES = dict(max_output_bytes_per_second=1024, max_output_lines_per_second=10)
DEFAULT_OUTPUT_BYTES_PER_SECOND = 1024 * 1024
DEFAULT_OUTPUT_LINES_PER_SECOND = 2000


@dataclass(frozen=True, kw_only=True)
class PluginConfig:
    """Everything ``[plugins.NAME]`` may say about one plugin: where it is, how it restarts, its limits
    and its grants. Grants are *extra*: the sandbox always allows what every plugin needs."""

    name: str
    path: Path | None = None
    module: str | None = None
    # A plugin in another language (docs/plugins/PROTOCOL.md): the program that runs ``path``,
    # e.g. ["node"]; its first item is resolved to an absolute path when the file is loaded.
    command: tuple[str, ...] = ()
    enabled: bool = True
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    max_concurrency: int = 100
    # issue 16: processes of this plugin in one NATS queue group (same user, same sandbox).
    replicas: int = 1
    max_memory_mb: int = 256
    max_cpu_percent: float = 90.0
    cpu_window_seconds: float = DEFAULT_CPU_WINDOW_SECONDS
    max_output_bytes_per_second: int = DEFAULT_OUTPUT_BYTES_PER_SECOND
    max_output_lines_per_second: int = DEFAULT_OUTPUT_LINES_PER_SECOND
    max_open_files: int = 256
    max_processes: int = 0
    max_threads: int = 64
    max_disk_mb: int = DEFAULT_MAX_DISK_MB
    max_publish_rate: float = DEFAULT_MAX_PUBLISH_RATE
    max_publish_bytes_rate: float = DEFAULT_MAX_PUBLISH_BYTES_RATE
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS
    env: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    read_paths: tuple[Path, ...] = ()
    write_paths: tuple[Path, ...] = ()
    network: tuple[str, ...] = ()
    # Kernel isolation that needs root; off only where it gets in the way (see the sandbox docs).
    private_mounts: bool = True
    pid_namespace: bool = True
    # Who may run it from chat (enforced by the router): adapter names, channels, a platform role.
    platforms: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    min_role: str = "user"
    # Plugin services (storage, HTTP gateway, files): their [plugins.NAME.<service>] tables as
    # written, each validated by its service's own config module.
    storage: Mapping[str, Any] = field(default_factory=dict, hash=False)
    http: Mapping[str, Any] = field(default_factory=dict, hash=False)
    files: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        name = self.name if isinstance(self.name, str) else repr(self.name)
        try:
            validate_plugin_name(self.name)
        except ValueError as exc:
            raise _fail(_dotted("plugins", name), str(exc)) from None

        def key(field_name: str) -> str:
            return _dotted("plugins", name, field_name)

        def put(field_name: str, value: object) -> None:
            object.__setattr__(self, field_name, value)

        if self.path is not None and self.module is not None:
            raise _fail(_dotted("plugins", name), "set either 'path' or 'module', not both")
        if self.path is not None and (not isinstance(self.path, Path) or not self.path.is_absolute()):
            raise _fail(key("path"), f"must be an absolute path, got {self.path!r}")
        if self.module is not None and not (isinstance(self.module, str) and _MODULE.fullmatch(self.module)):
            raise _fail(
                key("module"), f"must be 'package.module' or 'package.module:Class', got {self.module!r}"
            )
        put("command", _command(key("command"), self.command, path=self.path, module=self.module))
        put("enabled", _bool(key("enabled"), self.enabled))
        put("private_mounts", _bool(key("private_mounts"), self.private_mounts))
        put("pid_namespace", _bool(key("pid_namespace"), self.pid_namespace))
        put("restart", _enum(key("restart"), RestartPolicy, self.restart))
        for number, minimum in _PLUGIN_INTS.items():
            put(number, _int(key(number), getattr(self, number), minimum=minimum))
        if self.replicas > MAX_REPLICAS:  # issue 16
            raise _fail(key("replicas"), f"must be at most {MAX_REPLICAS}, got {self.replicas}")
        if self.command and self.max_processes > 0:
            # Allowing processes would let it execute every readable file, and the PID namespace
            # that comes with it makes the kernel refuse the runtime's threads (EINVAL on clone).
            raise _fail(
                key("max_processes"), "must be 0 for a plugin with 'command' (it may exec only its program)"
            )
        put("command_timeout", _float(key("command_timeout"), self.command_timeout))
        ncpu = os.cpu_count() or 1
        put("max_cpu_percent", _float(key("max_cpu_percent"), self.max_cpu_percent, maximum=100.0 * ncpu))
        put("cpu_window_seconds", _float(key("cpu_window_seconds"), self.cpu_window_seconds))
        for rate, minimum in _OUTPUT_RATES.items():
            put(rate, _int(key(rate), getattr(self, rate), minimum=minimum))
        put("max_publish_rate", _float(key("max_publish_rate"), self.max_publish_rate))
        put("max_publish_bytes_rate", _float(key("max_publish_bytes_rate"), self.max_publish_bytes_rate))
        put("env", _strings(key("env"), self.env, env_name_problem))
        put("publish", _strings(key("publish"), self.publish, subject_problem))
        put("subscribe", _strings(key("subscribe"), self.subscribe, _subscribe_grant))
        put("network", _strings(key("network"), self.network, _host_port))
        put("read_paths", _paths(key("read_paths"), self.read_paths))
        put("write_paths", _paths(key("write_paths"), self.write_paths))
        parse_command_access(
            _dotted("plugins", name),
            {"platforms": list(self.platforms), "channels": list(self.channels), "min_role": self.min_role},
        )
        put("platforms", tuple(self.platforms))
        put("channels", tuple(self.channels))
        for service in ("storage", "http", "files"):
            table = getattr(self, service)
            if not isinstance(table, Mapping):
                raise _fail(key(service), f"must be a table ([plugins.{name}.{service}]), got {table!r}")
            put(service, MappingProxyType(dict(table)))
        parse_storage_limits(self.name, self.storage)  # [plugins.NAME.storage]: raises ConfigError
        parse_file_limits(self.name, self.files)  # [plugins.NAME.files]: raises ConfigError

    @property
    def access(self) -> CommandAccess | None:
        """Its chat access rule, or None when it is open to everyone everywhere."""
        if not self.platforms and not self.channels and self.min_role == "user":
            return None
        table = {
            "platforms": list(self.platforms),
            "channels": list(self.channels),
            "min_role": self.min_role,
        }
        return parse_command_access(_dotted("plugins", self.name), table)

    @property
    def limits(self) -> Limits:
        """The limits the supervisor's watchdog enforces on this plugin."""
        return Limits(
            max_memory_mb=self.max_memory_mb,
            max_cpu_percent=self.max_cpu_percent,
            cpu_window_seconds=self.cpu_window_seconds,
            max_output_bytes_per_second=self.max_output_bytes_per_second,
            max_output_lines_per_second=self.max_output_lines_per_second,
            max_open_files=self.max_open_files,
            max_processes=self.max_processes,
            max_threads=self.max_threads,
            max_disk_mb=self.max_disk_mb,
            max_publish_rate=self.max_publish_rate,
            max_publish_bytes_rate=self.max_publish_bytes_rate,
            max_subscriptions=self.max_subscriptions,
        )


def _command(key: str, value: object, *, path: Path | None, module: str | None) -> tuple[str, ...]:
    """``[plugins.NAME] command``: the program (resolved on PATH) and its first arguments."""
    if value == () or value == []:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise _fail(key, f'must be a list of non-empty strings, e.g. ["node"], got {value!r}')
    if any("\0" in item for item in value):
        raise _fail(key, "must not contain NUL characters")
    if module is not None:
        raise _fail(key, "runs a file: set 'path' (the plugin's main file), not 'module'")
    if path is None:
        raise _fail(key, "needs 'path': the plugin's main file, given to the program as its last argument")
    try:
        program = resolve_program(value[0])
    except ProgramNotRunnable as exc:
        raise _fail(key, str(exc)) from None
    return (str(program), *value[1:])


# RoseyConfig field -> the TOML key it comes from, so that its errors name what the user wrote.
_ROSEY_KEYS = {
    "state_dir": "rosey.state_dir",
    "plugin_dirs": "rosey.plugin_dirs",
    "entry_points": "rosey.entry_points",
    "sandbox": "rosey.sandbox",
    "launcher": "rosey.launcher",
    "command_timeout": "rosey.command_timeout",
    "log_level": "rosey.log_level",
    "nats_url": "nats.url",
    "nats_monitor": "nats.monitor",
    "nats_max_payload": "nats.max_payload",
    "nats_monitor_url": "nats.monitor_url",
}


@dataclass(frozen=True, kw_only=True)
class RoseyConfig:
    """The whole ``rosey.toml``, with every path absolute. ``source`` is None when no file was read."""

    source: Path | None = None
    base_dir: Path
    state_dir: Path
    plugin_dirs: tuple[Path, ...]
    entry_points: bool = True
    sandbox: SandboxMode = SandboxMode.BEST_EFFORT
    launcher: Launcher = Launcher.ZYGOTE
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    log_level: str = "info"
    nats_url: str | None = None
    nats_monitor: bool = True
    nats_monitor_url: str | None = None
    nats_max_payload: int = DEFAULT_MAX_PAYLOAD
    plugins: Mapping[str, PluginConfig] = field(default_factory=dict, hash=False)
    adapters: Mapping[str, AdapterConfig] = field(default_factory=dict, hash=False)
    chat: ChatConfig = field(default_factory=ChatConfig)
    #: ``[secrets.NAME]``: operator secrets the host's services use for plugins (never given to one).
    secrets: Mapping[str, SecretSource] = field(default_factory=dict, hash=False)
    #: ``[web]``: health, readiness and metrics over HTTP on 127.0.0.1.
    web: WebConfig = field(default_factory=WebConfig)
    #: s-host: ``[hub]``, ``[hosts.NAME]`` (plugins on other machines) and ``[host]`` (rosey host).
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        def put(field_name: str, value: object) -> None:
            object.__setattr__(self, field_name, value)

        for field_name in ("base_dir", "state_dir"):
            value = getattr(self, field_name)
            if not isinstance(value, Path) or not value.is_absolute():
                raise _fail(
                    _ROSEY_KEYS.get(field_name, field_name), f"must be an absolute path, got {value!r}"
                )
        put("plugin_dirs", _paths(_ROSEY_KEYS["plugin_dirs"], self.plugin_dirs))
        put("entry_points", _bool(_ROSEY_KEYS["entry_points"], self.entry_points))
        put("sandbox", _enum(_ROSEY_KEYS["sandbox"], SandboxMode, self.sandbox))
        put("launcher", _enum(_ROSEY_KEYS["launcher"], Launcher, self.launcher))
        put("command_timeout", _float(_ROSEY_KEYS["command_timeout"], self.command_timeout))
        level = self.log_level.lower() if isinstance(self.log_level, str) else self.log_level
        if level not in LOG_LEVELS:
            choices = ", ".join(repr(c) for c in LOG_LEVELS)
            raise _fail(_ROSEY_KEYS["log_level"], f"must be one of {choices}, got {self.log_level!r}")
        put("log_level", level)
        if self.nats_url is not None:
            _check_nats_url(_ROSEY_KEYS["nats_url"], self.nats_url)
        put("nats_monitor", _bool(_ROSEY_KEYS["nats_monitor"], self.nats_monitor))
        put("nats_max_payload", _int(_ROSEY_KEYS["nats_max_payload"], self.nats_max_payload, minimum=4096))
        if self.nats_max_payload > MAX_PAYLOAD_CEILING:
            raise _fail(
                _ROSEY_KEYS["nats_max_payload"],
                f"must be at most {MAX_PAYLOAD_CEILING} (64 MB, nats-server's ceiling), "
                f"got {self.nats_max_payload}",
            )
        if self.nats_monitor_url is not None:
            _check_monitor_url(_ROSEY_KEYS["nats_monitor_url"], self.nats_monitor_url)
        if not isinstance(self.plugins, Mapping):
            raise _fail("plugins", f"must be a mapping of name to PluginConfig, got {self.plugins!r}")
        for name, plugin in self.plugins.items():
            if not isinstance(plugin, PluginConfig) or plugin.name != name:
                raise _fail(_dotted("plugins", str(name)), f"must be a PluginConfig named {name!r}")
        put("plugins", MappingProxyType(dict(self.plugins)))
        for name in self.adapters:
            if name in self.plugins:
                raise _fail(
                    _dotted("adapters", name),
                    f"a plugin is named {name!r} too ([plugins.{name}]); "
                    "adapter and plugin names must differ",
                )
        put("adapters", MappingProxyType(dict(self.adapters)))
        parse_http_grants(self.plugins, self.secrets)  # [plugins.NAME.http]: rules, limits, secrets known
        # s-host: a plugin runs either here or on hosts, never both ... s-spread: unless [hub] also_runs
        # names it (then the hub runs its own replicas of it too, from its [plugins.NAME] table).
        # s-remote: otherwise the hub's [plugins.NAME] of a plugin on a host says only what the hub
        # applies (HUB_SIDE_KEYS).
        also_runs = self.cluster.hub.also_runs
        for remote, host in self.cluster.remote_plugins.items():
            if remote in self.plugins and self.cluster.host is None and remote not in also_runs:
                for key in plugin_keys_set(self.plugins[remote], self.command_timeout):
                    if key not in HUB_SIDE_KEYS:
                        raise _fail(_dotted("plugins", remote, key), _remote_key_problem(remote, host, key))
        for name in also_runs:
            if name not in self.plugins:
                raise _fail("hub.also_runs", f"plugin {name!r} needs a [plugins.{name}] table on the hub")

    def plugin(self, name: str) -> PluginConfig:
        """The ``[plugins.NAME]`` settings, or the defaults (with the global command timeout) if none."""
        configured = self.plugins.get(name)
        if configured is not None:
            return configured
        return PluginConfig(name=name, command_timeout=self.command_timeout)


# --- s-remote
def _remote_key_problem(plugin: str, host: str, key: str) -> str:
    return (
        f"plugin {plugin!r} is on host {host!r} ([hosts.{host}]): {key} belongs in that host's "
        f"rosey.toml; here only what the hub applies to it: {', '.join(HUB_SIDE_KEYS)}"
    )


def plugin_keys_set(plugin: PluginConfig, command_timeout: float) -> list[str]:
    """The ``[plugins.NAME]`` keys of ``plugin`` that differ from their defaults (``command_timeout``:
    the file's global one): what its table says, whichever side (hub or host) reads it."""
    default = PluginConfig(name=plugin.name, command_timeout=command_timeout)
    return [f.name for f in fields(PluginConfig) if getattr(plugin, f.name) != getattr(default, f.name)]


# --- end s-remote


# ------------------------------------------------------------------------ loading

_TOP_KEYS = (
    "adapters",
    "chat",
    "nats",
    "plugins",
    "rosey",
    "secrets",
    "web",
    "host",
    "hosts",
    "hub",
)  # s-host
_ROSEY_TABLE_KEYS = tuple(k.split(".", 1)[1] for k in _ROSEY_KEYS.values() if k.startswith("rosey."))
_NATS_KEYS = ("max_payload", "monitor", "monitor_url", "url")
_PLUGIN_KEYS = tuple(f.name for f in fields(PluginConfig) if f.name != "name")


def _table(raw: Mapping[str, Any], key: str, dotted: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise _fail(dotted, f"must be a table, got {value!r}")
    return value


def _known(table: Mapping[str, Any], allowed: tuple[str, ...], *prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise _fail(_dotted(*prefix, key), f"unknown key; allowed keys: {', '.join(sorted(allowed))}")


def _path(key: str, value: object, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise _fail(key, f"must be a non-empty string (a path), got {value!r}")
    return (base / Path(value).expanduser()).resolve()


def _path_list(key: str, value: object, base: Path) -> list[Path]:
    if not isinstance(value, list):
        raise _fail(key, f"must be a list of paths, got {value!r}")
    return [_path(f"{key}[{index}]", item, base) for index, item in enumerate(value)]


def _plugin(name: str, table: dict[str, Any], base: Path, command_timeout: float) -> PluginConfig:
    try:
        validate_plugin_name(name)
    except ValueError as exc:
        raise _fail(_dotted("plugins", name), str(exc)) from None
    _known(table, _PLUGIN_KEYS, "plugins", name)
    values = dict(table)
    values.setdefault("command_timeout", command_timeout)
    if "path" in values:
        path = _path(_dotted("plugins", name, "path"), values["path"], base)
        if "module" not in values:  # both set: let PluginConfig say so, whatever the path
            if not path.exists():
                raise _fail(_dotted("plugins", name, "path"), f"file not found: {path}")
            if not path.is_file():
                raise _fail(_dotted("plugins", name, "path"), f"not a regular file: {path}")
        values["path"] = path
    for grant in ("read_paths", "write_paths"):
        if grant in values:
            values[grant] = _path_list(_dotted("plugins", name, grant), values[grant], base)
    return PluginConfig(name=name, **values)


def _build(raw: Mapping[str, Any], source: Path | None, base: Path) -> RoseyConfig:
    _known(raw, _TOP_KEYS)
    rosey = _table(raw, "rosey", "rosey")
    _known(rosey, _ROSEY_TABLE_KEYS, "rosey")
    nats = _table(raw, "nats", "nats")
    _known(nats, _NATS_KEYS, "nats")
    plugins = _table(raw, "plugins", "plugins")

    state_dir = _path("rosey.state_dir", rosey.get("state_dir", ".rosey"), base)
    if override := os.environ.get(STATE_DIR_ENV):
        state_dir = Path(override).expanduser().resolve()
    # The file's value is checked even when the environment overrides it: a typo in rosey.toml
    # must not wait for the day the variable is unset.
    launcher = _enum(_ROSEY_KEYS["launcher"], Launcher, rosey.get("launcher", Launcher.ZYGOTE))
    if override := os.environ.get(LAUNCHER_ENV, "").strip():
        # What PluginProcess and the test harness honour too, so `ROSEY_LAUNCHER=spawn rosey run`
        # means the same as it does everywhere else. An unknown value is an error here, not a
        # silent fallback: the operator asked for something this bot would not do.
        launcher = _enum(f"{LAUNCHER_ENV} (environment)", Launcher, override.lower())
    command_timeout = _float("rosey.command_timeout", rosey.get("command_timeout", DEFAULT_COMMAND_TIMEOUT))
    configured: dict[str, PluginConfig] = {}
    cluster = parse_cluster(raw.get("hub"), raw.get("hosts"), raw.get("host"), base)  # s-host
    for name, table in plugins.items():
        if not isinstance(table, dict):
            raise _fail(_dotted("plugins", name), f"must be a table, got {table!r}")
        host = cluster.remote_plugins.get(name)
        if host is not None and cluster.host is None and name not in cluster.hub.also_runs:  # s-remote
            for key in table:
                if key not in HUB_SIDE_KEYS:
                    raise _fail(_dotted("plugins", name, key), _remote_key_problem(name, host, key))
        configured[name] = _plugin(name, table, base, command_timeout)
    return RoseyConfig(
        source=source,
        base_dir=base,
        state_dir=state_dir,
        plugin_dirs=tuple(_path_list("rosey.plugin_dirs", rosey.get("plugin_dirs", ["plugins"]), base)),
        entry_points=rosey.get("entry_points", True),
        sandbox=rosey.get("sandbox", SandboxMode.BEST_EFFORT),
        launcher=launcher,
        command_timeout=command_timeout,
        log_level=rosey.get("log_level", "info"),
        nats_url=nats.get("url"),
        nats_monitor=nats.get("monitor", True),
        nats_monitor_url=nats.get("monitor_url"),
        nats_max_payload=nats.get("max_payload", DEFAULT_MAX_PAYLOAD),
        plugins=configured,
        adapters=parse_adapters(raw.get("adapters"), base),
        chat=parse_chat(raw.get("chat")),
        secrets=parse_secrets(raw.get("secrets"), base),
        web=parse_web(raw.get("web")),
        cluster=cluster,  # s-host
    )


def _display(path: Path) -> str:
    """The file as the user would name it: relative to the current directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):  # outside the current directory, or the cwd is gone
        return str(path)


def load_config(path: str | Path | None = None, *, base_dir: Path | None = None) -> RoseyConfig:
    """Read and validate a ``rosey.toml``; raise :class:`ConfigError` naming file, key and reason.

    ``path=None`` reads ``rosey.toml`` in ``base_dir`` (default: the current directory) if there is
    one, else returns the defaults. A relative ``path`` is taken relative to ``base_dir``; the
    paths *inside* the file are always relative to the file's own directory.
    """
    start = (Path(base_dir) if base_dir is not None else Path.cwd()).expanduser().resolve()
    if path is None:
        candidate = start / CONFIG_FILENAME
        if not candidate.is_file():
            return _build({}, None, start)
        file = candidate
    else:
        file = start / Path(path).expanduser()
        if not file.exists():
            raise ConfigError(f"{path}: file not found", file=file)
    file = file.resolve()
    label = _display(file)
    try:
        with file.open("rb") as stream:
            raw = tomllib.load(stream)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}", file=file) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not valid UTF-8 text: {exc}", file=file) from exc
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read: {exc.strerror or exc}", file=file) from exc
    try:
        return _build(raw, file, file.parent)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}", key=exc.key, file=file) from None


_EXAMPLE = f"""\
# rosey.toml: configuration of the Rosey bot and its sandboxed plugins.
# Every key is optional; the values shown are the defaults unless noted.
# Relative paths are relative to the directory of this file.

[rosey]
state_dir = ".rosey"              # runtime files, plugin data (ROSEY_STATE_DIR overrides it)
plugin_dirs = ["plugins"]         # where *.py plugins are discovered (missing dirs are skipped)
entry_points = true               # also discover installed plugins ("rosey.plugins" entry points)
sandbox = "best-effort"           # "strict": refuse to run a plugin the kernel cannot fully sandbox
launcher = "zygote"               # "spawn": a fresh interpreter per plugin (ROSEY_LAUNCHER overrides it)
command_timeout = 10.0            # seconds a plugin may take to answer a command
log_level = "info"                # debug | info | warning | error

[nats]
# url = "nats://127.0.0.1:4222"   # use an existing server; without it Rosey embeds its own
monitor = true                    # embedded server: HTTP monitoring on 127.0.0.1 (random port);
                                  # flood detection reads it, so false turns that off
# monitor_url = "http://127.0.0.1:8222"   # with `url`: that server's monitoring, for flood detection
max_payload = 1048576             # embedded server: largest message in bytes (a command, a result); <= 64 MB

# One table per plugin. Without `path` or `module` it tunes a plugin found by discovery.
[plugins.echo]
# path = "plugins/echo.py"        # a plugin file ...
# module = "my_package.echo:EchoPlugin"   # ... or an importable module (not both)
enabled = true
restart = "on-failure"            # never | on-failure | always
command_timeout = 10.0            # overrides [rosey].command_timeout
max_concurrency = 100             # commands in flight inside the plugin; 1 = one at a time
# replicas = 1                    # processes serving its commands (one queue group), issue 16
max_memory_mb = 256
max_cpu_percent = 90.0            # sustained over cpu_window_seconds; 100 = one full core
cpu_window_seconds = {DEFAULT_CPU_WINDOW_SECONDS}
max_output_bytes_per_second = 1048576  # stdout + stderr read per second, bursts of 5 s worth;
max_output_lines_per_second = 2000     # beyond, the plugin waits; 3 s beyond (burst spent): killed
max_open_files = 256
max_processes = 0                 # child processes the plugin may start
max_threads = 64
max_disk_mb = {DEFAULT_MAX_DISK_MB}                # real blocks in its data dir; also the largest one file
# Sent into NATS (denied publishes too), over 2 s, and subscriptions held: above any of them the
# plugin is stopped ("flood").
max_publish_rate = {DEFAULT_MAX_PUBLISH_RATE:_.0f}         # messages/s
max_publish_bytes_rate = {DEFAULT_MAX_PUBLISH_BYTES_RATE:_.0f}   # bytes/s
max_subscriptions = {DEFAULT_MAX_SUBSCRIPTIONS:_}
env = []                          # host environment variables the plugin may see, e.g. ["TZ"]
publish = []                      # extra NATS subjects it may publish to
subscribe = []                    # extra NATS subjects it may subscribe to
read_paths = []                   # extra files/directories it may read
write_paths = []                  # extra files/directories it may write
network = []                      # extra TCP destinations, e.g. ["api.example.org:443"]
platforms = []                    # adapters whose users may run it, e.g. ["libera"]; [] = all
channels = []                     # channels it answers in, "#c" or "libera:#c"; "private" = DMs; [] = all
min_role = "user"                 # user | voice | op | admin (platform roles, see the chat docs)

[chat]
prefix = "!"
admins = []                       # may run !rosey status / restart NAME, e.g. ["libera:alice"]
# admin_role = "admin"            # anyone with this platform role is an admin too

[web]
enabled = true                    # /healthz, /readyz, /metrics on 127.0.0.1; false: no port at all
port = 0                          # 0: a free port (printed in the ready line, in the runtime file)

# One table per chat platform; the name shows in status, logs and `rosey restart NAME`.
# Secrets are never written here: <secret>_env names a variable, <secret>_file a file.
# [adapters.libera]
# type = "irc"                    # irc | matrix | cytube | console | custom
# server = "irc.libera.chat"
# port = 6697
# tls = true
# nick = "rosey"
# channels = ["#mychannel"]
# password_env = "IRC_PASSWORD"   # with auth = "sasl" | "server" | "nickserv"
"""


def example_config() -> str:
    """A commented ``rosey.toml`` with every key, that :func:`load_config` accepts (the docs quote it)."""
    return _EXAMPLE
