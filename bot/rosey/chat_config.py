"""The chat side of ``rosey.toml``: ``[adapters.NAME]`` tables and the ``[chat]`` table.

Example::

    [chat]
    prefix = "!"
    admins = ["irc:alice", "matrix:@bob:example.org"]   # may run !rosey status / restart
    admin_role = "admin"            # optional: anyone with this platform role is an admin too

    [adapters.libera]               # the name shows in status, logs and `rosey restart libera`
    type = "irc"
    server = "irc.libera.chat"
    nick = "rosey"
    channels = ["#mychannel"]
    password_env = "IRC_PASSWORD"   # or password_file = "secrets/irc" (read when it starts)

Secrets are never in the file itself: ``<secret>_env`` names an environment variable of
``rosey run``, ``<secret>_file`` a file; either is read when the adapter process starts and
handed to that process alone. Validation names the file, the dotted key and the reason, as for
the rest of ``rosey.toml``.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bot.rosey.adapters.types import ADAPTER_TYPES, COMMON_KEYS, CONSOLE, CUSTOM, SECRET_KEYS, AdapterType
from bot.rosey.core.chat import Role
from bot.rosey.core.subjects import validate_plugin_name
from bot.rosey.errors import ConfigError, SecretUnavailable
from bot.rosey.services.access import CommandAccess
from bot.rosey.supervision.spec import RestartPolicy

__all__ = [
    "DEFAULT_ADAPTER_MEMORY_MB",
    "AdapterConfig",
    "ChatConfig",
    "SecretSource",
    "SecretUnavailable",
    "parse_adapters",
    "parse_chat",
    "parse_command_access",
    "parse_secrets",
]

DEFAULT_ADAPTER_MEMORY_MB = 256
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _fail(key: str, reason: str) -> ConfigError:
    return ConfigError(f"{key}: {reason}", key=key)


@dataclass(frozen=True, kw_only=True)
class SecretSource:
    """Where one secret comes from: an environment variable or a file (never the value itself)."""

    key: str  # the dotted config key, for messages
    env: str | None = None
    file: Path | None = None

    def read(self, environ: Mapping[str, str] | None = None) -> str:
        """The secret's value; raises :class:`SecretUnavailable` saying which source failed."""
        if self.env is not None:
            value = (os.environ if environ is None else environ).get(self.env)
            if not value:
                raise SecretUnavailable(
                    f"{self.key}: environment variable {self.env} is not set", key=self.key
                )
            return value
        assert self.file is not None
        try:
            text = self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretUnavailable(
                f"{self.key}: cannot read {self.file}: {exc.strerror or exc}", key=self.key
            ) from None
        if not text:
            raise SecretUnavailable(f"{self.key}: {self.file} is empty", key=self.key)
        return text

    def loosely_readable(self) -> bool:
        """A secret file that users other than its owner may read (worth a warning)."""
        if self.file is None:
            return False
        try:
            return bool(self.file.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
        except OSError:
            return False


@dataclass(frozen=True, kw_only=True)
class AdapterConfig:
    """One ``[adapters.NAME]`` table: the platform settings (no secrets) and where secrets are."""

    name: str
    type: str
    enabled: bool = True
    restart: RestartPolicy = RestartPolicy.ALWAYS
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    max_memory_mb: int = DEFAULT_ADAPTER_MEMORY_MB

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        object.__setattr__(self, "secrets", MappingProxyType(dict(self.secrets)))

    @property
    def kind(self) -> AdapterType:
        return ADAPTER_TYPES[self.type]

    @property
    def entry(self) -> str | None:
        """The ``module:Class`` its process runs (None for a custom adapter given by ``path``)."""
        if self.type == CUSTOM:
            module = self.settings.get("module")
            return str(module) if module is not None else None
        return self.kind.entry

    @property
    def path(self) -> Path | None:
        """A custom adapter's file (absolute), run like a plugin file."""
        path = self.settings.get("path") if self.type == CUSTOM else None
        return Path(path) if path is not None else None

    @property
    def is_process(self) -> bool:
        """Every adapter but the console (the operator's own terminal, inside ``rosey run``)."""
        return self.type != CONSOLE

    def tcp_ports(self) -> tuple[int, ...]:
        """The platform ports its sandbox opens: the type's own, plus ``ports``."""
        return tuple(sorted({*self.kind.ports(self.settings), *self.ports}))

    def hosts(self) -> tuple[str, ...]:
        return self.kind.hosts(self.settings)


@dataclass(frozen=True, kw_only=True)
class ChatConfig:
    """The ``[chat]`` table."""

    prefix: str = "!"
    admins: tuple[str, ...] = ()
    admin_role: Role | None = None


def _number(key: str, value: object, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(key, f"must be a number, got {value!r}")
    if value < minimum:
        raise _fail(key, f"must be at least {minimum:g}, got {value!r}")
    return float(value)


def _strings(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(key, f"must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _secret_source(key: str, value: object, base: Path, *, env: bool) -> SecretSource:
    """Where one secret comes from, as a config key says it: a variable name, or a file path
    (relative to rosey.toml). The one reading of ``<secret>_env/_file`` and ``[secrets.NAME]``."""
    if not isinstance(value, str) or not value:
        raise _fail(key, f"must be a non-empty string, got {value!r}")
    if env:
        if not _ENV_NAME.fullmatch(value):
            raise _fail(key, f"must be an environment variable name, got {value!r}")
        return SecretSource(key=key, env=value)
    return SecretSource(key=key, file=(base / Path(value).expanduser()).resolve())


def _adapter(name: str, table: Mapping[str, Any], base: Path) -> AdapterConfig:
    dotted = f"adapters.{name}"
    try:
        validate_plugin_name(name)
    except ValueError as exc:
        raise _fail(dotted, str(exc).replace("plugin name", "adapter name")) from None
    kind_name = table.get("type")
    if kind_name not in ADAPTER_TYPES:
        known = ", ".join(repr(k) for k in ADAPTER_TYPES)
        raise _fail(f"{dotted}.type", f"must be one of {known}, got {kind_name!r}")
    kind = ADAPTER_TYPES[kind_name]
    secret_keys = {key: secret for secret in kind.secrets for key in SECRET_KEYS[secret]}
    allowed = {*COMMON_KEYS, *(kind.keys or ()), *secret_keys}
    for key in table:
        if key not in allowed and kind.keys is not None:
            raise _fail(f"{dotted}.{key}", f"unknown key; allowed keys: {', '.join(sorted(allowed))}")
    for key in kind.required:
        if key not in table:
            raise _fail(f"{dotted}.{key}", f"is required for a {kind_name} adapter")
    if (reason := kind.check(table)) is not None:
        raise _fail(dotted, reason)
    secrets: dict[str, SecretSource] = {}
    for key, secret in secret_keys.items():
        if key not in table:
            continue
        if secret in secrets:
            raise _fail(
                f"{dotted}.{key}", f"{secret} is already set by {secrets[secret].key}; set one of them"
            )
        secrets[secret] = _secret_source(f"{dotted}.{key}", table[key], base, env=key.endswith("_env"))
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail(f"{dotted}.enabled", f"must be true or false, got {enabled!r}")
    try:
        restart = RestartPolicy(table.get("restart", RestartPolicy.ALWAYS))
    except ValueError:
        choices = ", ".join(repr(p.value) for p in RestartPolicy)
        raise _fail(f"{dotted}.restart", f"must be one of {choices}, got {table['restart']!r}") from None
    ports: list[int] = []
    for index, port in enumerate(table.get("ports", [])) if isinstance(table.get("ports", []), list) else ():
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise _fail(f"{dotted}.ports[{index}]", f"must be a TCP port 1..65535, got {port!r}")
        ports.append(port)
    if not isinstance(table.get("ports", []), list):
        raise _fail(f"{dotted}.ports", f"must be a list of TCP ports, got {table['ports']!r}")
    memory = int(
        _number(f"{dotted}.max_memory_mb", table.get("max_memory_mb", DEFAULT_ADAPTER_MEMORY_MB), minimum=64)
    )
    for key in ("rate", "max_queue_age", "reconnect_min", "reconnect_max"):
        if key in table:
            _number(f"{dotted}.{key}", table[key], minimum=0.001)
    for key in ("burst", "max_queued"):
        if key in table and (
            isinstance(table[key], bool) or not isinstance(table[key], int) or table[key] < 1
        ):
            raise _fail(f"{dotted}.{key}", f"must be an integer >= 1, got {table[key]!r}")
    settings = {
        k: v
        for k, v in table.items()
        if k not in secret_keys and k not in ("type", "enabled", "restart", "ports")
    }
    return AdapterConfig(
        name=name,
        type=kind_name,
        enabled=enabled,
        restart=restart,
        settings=settings,
        secrets=secrets,
        ports=tuple(ports),
        max_memory_mb=memory,
    )


def parse_adapters(raw: object, base: Path) -> dict[str, AdapterConfig]:
    """The ``[adapters]`` tables; raises :class:`ConfigError` naming the dotted key."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail("adapters", f"must be a table of [adapters.NAME] tables, got {raw!r}")
    adapters = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise _fail(f"adapters.{name}", f"must be a table, got {table!r}")
        adapters[name] = _adapter(name, table, base)
    return adapters


def parse_chat(raw: object) -> ChatConfig:
    if raw is None:
        return ChatConfig()
    if not isinstance(raw, dict):
        raise _fail("chat", f"must be a table, got {raw!r}")
    for key in raw:
        if key not in ("prefix", "admins", "admin_role"):
            raise _fail(f"chat.{key}", "unknown key; allowed keys: admin_role, admins, prefix")
    prefix = raw.get("prefix", "!")
    if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
        raise _fail("chat.prefix", f"must be a non-empty string without spaces, got {prefix!r}")
    admins = _strings("chat.admins", raw.get("admins", []))
    for index, admin in enumerate(admins):
        if ":" not in admin.strip(":"):
            raise _fail(
                f"chat.admins[{index}]", f"must be 'platform:user id' (e.g. 'irc:alice'), got {admin!r}"
            )
    admin_role = None
    if "admin_role" in raw:
        try:
            admin_role = Role.parse(raw["admin_role"])
        except ValueError as exc:
            raise _fail("chat.admin_role", str(exc)) from None
    return ChatConfig(prefix=prefix, admins=admins, admin_role=admin_role)


def parse_command_access(dotted: str, table: Mapping[str, Any]) -> CommandAccess | None:
    """A plugin's ``platforms``, ``channels`` and ``min_role`` keys; None when it sets none."""
    if not any(key in table for key in ("platforms", "channels", "min_role")):
        return None
    platforms = _strings(f"{dotted}.platforms", table.get("platforms", []))
    channels = _strings(f"{dotted}.channels", table.get("channels", []))
    try:
        min_role = Role.parse(table.get("min_role", "user"))
    except ValueError as exc:
        raise _fail(f"{dotted}.min_role", str(exc)) from None
    return CommandAccess(platforms=platforms, channels=channels, min_role=min_role)


def parse_secrets(raw: object, base: Path) -> dict[str, SecretSource]:
    """``[secrets.NAME]`` tables: ``env = "VARIABLE"`` or ``file = "path"`` (relative to rosey.toml)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail("secrets", f"must be a table of [secrets.NAME] tables, got {raw!r}")
    secrets = {}
    for name, table in raw.items():
        dotted = f"secrets.{name}"
        try:
            validate_plugin_name(name)
        except ValueError as exc:
            raise _fail(dotted, str(exc).replace("plugin name", "secret name")) from None
        if not isinstance(table, dict):
            raise _fail(dotted, f"must be a table with env = ... or file = ..., got {table!r}")
        for key in table:
            if key not in ("env", "file"):
                raise _fail(f"{dotted}.{key}", "unknown key; allowed keys: env, file")
        if ("env" in table) == ("file" in table):
            raise _fail(dotted, "set exactly one of env (a variable name) and file (a path)")
        kind = "env" if "env" in table else "file"
        secrets[name] = _secret_source(f"{dotted}.{kind}", table[kind], base, env=kind == "env")
    return secrets
