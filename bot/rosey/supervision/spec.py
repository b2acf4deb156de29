"""What the supervisor is told about one plugin: its spec, its resource limits, its restart policy.

These are the supervisor's own vocabulary. ``rosey.toml`` is read by ``config.py``, which turns a
``[plugins.NAME]`` table into these types (``PluginConfig.limits``); the supervisor never reads
configuration itself, so a test or an embedding program builds a :class:`PluginSpec` directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from bot.rosey.core.subjects import validate_plugin_name
from bot.rosey.errors import ConfigError

__all__ = [
    "DEFAULT_CPU_WINDOW_SECONDS",
    "MAX_REPLICAS",
    "Limits",
    "PluginSpec",
    "ProcessKind",
    "RestartPolicy",
]

#: The span over which ``max_cpu_percent`` must be exceeded by every sample before a plugin is killed.
DEFAULT_CPU_WINDOW_SECONDS = 10.0
#: issue 16: the most processes one plugin may run (each costs a process and a NATS connection).
MAX_REPLICAS = 16


class RestartPolicy(StrEnum):
    """When the supervisor restarts a plugin process that exited."""

    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


def _count(name: str, value: object, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum} or None, got {value!r}")


def _positive(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


class ProcessKind(StrEnum):
    """What a supervised process is: both are started, sandboxed, watched and restarted alike."""

    PLUGIN = "plugin"  # answers commands
    ADAPTER = "adapter"  # bridges one chat platform (see bot.rosey.adapters)


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits the watchdog enforces on one plugin; ``None`` means not enforced.

    ``Limits()`` enforces nothing, which is what a plugin without configured limits gets. A plugin
    whose CPU use stays above ``max_cpu_percent`` in every sample of ``cpu_window_seconds`` is
    killed; ``max_processes`` is only checked when it is above 0, since a plugin not allowed to
    fork cannot (the sandbox stops it) and counting children costs a /proc scan. ``max_disk_mb``
    caps the real blocks of the plugin's data dir (see ``supervision/disk.py``).

    The output rates are not swept by the watchdog: the supervisor hands them to the plugin's
    process, whose pipe readers stop reading beyond them (the plugin waits on its own writes)
    and report a plugin that keeps them stopped as an output flood, which is killed.

    ``max_publish_rate`` (messages/s) and ``max_publish_bytes_rate`` (bytes/s) bound what the
    plugin sends into NATS, denied publishes included, as the server counts it, and
    ``max_subscriptions`` the subscriptions of all its connections; above any, the plugin is
    stopped for "flood" (see :mod:`~bot.rosey.supervision.flood`).
    """

    max_memory_mb: int | None = None
    max_cpu_percent: float | None = None
    cpu_window_seconds: float = DEFAULT_CPU_WINDOW_SECONDS
    max_output_bytes_per_second: int | None = None
    max_output_lines_per_second: int | None = None
    max_open_files: int | None = None
    max_processes: int | None = None
    max_threads: int | None = None
    max_disk_mb: int | None = None
    max_publish_rate: float | None = None
    max_publish_bytes_rate: float | None = None
    max_subscriptions: int | None = None

    def __post_init__(self) -> None:
        _count("max_memory_mb", self.max_memory_mb, 1)
        _count("max_open_files", self.max_open_files, 1)
        _count("max_processes", self.max_processes, 0)
        _count("max_threads", self.max_threads, 1)
        _count("max_disk_mb", self.max_disk_mb, 1)
        if self.max_cpu_percent is not None:
            _positive("max_cpu_percent", self.max_cpu_percent)
        _positive("cpu_window_seconds", self.cpu_window_seconds)
        _count("max_output_bytes_per_second", self.max_output_bytes_per_second, 1)
        _count("max_output_lines_per_second", self.max_output_lines_per_second, 1)
        for name in ("max_publish_rate", "max_publish_bytes_rate"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        _count("max_subscriptions", self.max_subscriptions, 1)


@dataclass(frozen=True, kw_only=True)
class PluginSpec:
    """Everything the supervisor needs to (re)create one plugin's process."""

    name: str
    path: Path | None = None
    entry: str | None = None
    enabled: bool = True
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    limits: Limits = field(default_factory=Limits)
    source: str = "config"
    #: Why this plugin cannot be started at all (its file does not load), with file and line;
    #: the supervisor shows it as failed with this reason and never starts a process.
    load_error: str | None = None
    kind: ProcessKind = ProcessKind.PLUGIN
    #: issue 16: how many processes serve this plugin's commands (one NATS queue group), and,
    #: on the copy the supervisor gives each process, which of them this one is (1-based; None
    #: for a plugin with a single process).
    replicas: int = 1
    replica: int | None = None

    def __post_init__(self) -> None:
        validate_plugin_name(self.name)
        if not isinstance(self.replicas, int) or not 1 <= self.replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas must be 1..{MAX_REPLICAS}, got {self.replicas!r}")
        if self.replica is not None and not 1 <= self.replica <= self.replicas:
            raise ValueError(
                f"replica must be 1..{self.replicas}, got {self.replica!r}"
            )  # it becomes a token of the plugin's subjects
        object.__setattr__(self, "restart", RestartPolicy(self.restart))
        object.__setattr__(self, "kind", ProcessKind(self.kind))
        if not isinstance(self.limits, Limits):
            raise TypeError(f"PluginSpec.limits must be a Limits, got {type(self.limits).__name__}")
