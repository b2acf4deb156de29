"""The one schema of Rosey's status: per plugin, and for the whole instance.

``rosey status`` (its table and ``--json``), the watchdog's stats events and the control
service's replies all carry these records, serialized with ``to_dict()`` and read back with
``from_dict()``. ``to_dict()`` gives the JSON shape users and scripts already rely on;
``from_dict()`` ignores keys it does not know and fills in missing ones, so a reader and a
writer one field apart still understand each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar

__all__ = [
    "KILL_CAUSES",
    "STATUS_HISTORY",
    "STATUS_HISTORY_BUDGET",
    "LauncherStatus",
    "NatsStatus",
    "PluginState",
    "PluginStatus",
    "ResourceSample",
    "RoseyStatus",
    "WatchdogStatus",
    "history_per_plugin",
    "kill_cause",
    "unavailable_reason",
]

#: Resource samples kept in a plugin's status: one per watchdog sweep, so about the last minute.
STATUS_HISTORY = 60
#: Samples in a whole status, all plugins together (s-thousand): a status of 1,000 plugins with 60
#: samples each is 1.4 MB of JSON, over nats-server's default max_payload (1 MB), and encoding it
#: held the bot's loop for ~50 ms. With more than 50 plugins each gets a share of this budget.
STATUS_HISTORY_BUDGET = 3000


def history_per_plugin(plugins: int) -> int:
    """Resource samples per plugin in a status of ``plugins`` plugins (at least 2: a trend)."""
    return min(STATUS_HISTORY, max(2, STATUS_HISTORY_BUDGET // max(1, plugins)))


class PluginState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    # A run just ended in a crash; the restart decision moves the plugin on at once (to starting,
    # backoff or failed), so this state is seen in lifecycle events rather than in a status.
    CRASHED = "crashed"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    FAILED = "failed"
    DISABLED = "disabled"


#: Why the watchdog killed a plugin, as one word per kind of limit (the reason's first words ->
#: the cause): the ``cause`` of ``PluginStatus.kills`` and a low-cardinality metric label.
KILL_CAUSES: tuple[tuple[str, str], ...] = (
    ("memory", "memory"),
    ("cpu", "cpu"),
    ("threads", "threads"),
    ("open files", "open_files"),
    ("child processes", "processes"),
    ("disk", "disk"),
    ("unresponsive", "unresponsive"),
    ("flood", "flood"),  # NATS traffic: messages, bytes or subscriptions
    ("output flood", "output"),  # stdout/stderr beyond its rate
)


def kill_cause(reason: str) -> str:
    """The cause of a watchdog kill from its reason in words ("memory 301 MB > limit 256 MB" ->
    "memory"); "other" for a reason of no known kind."""
    return next((cause for start, cause in KILL_CAUSES if reason.startswith(start)), "other")


# ---------------------------------------------------------------------- tolerant readers


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# ---------------------------------------------------------------------- records


@dataclass(frozen=True, kw_only=True)
class ResourceSample:
    """One watchdog reading of a plugin process (``t`` is wall-clock time, for plotting).

    Fields a reader did not get (a history entry carries only ``t``, CPU and memory) are None.
    """

    t: float
    cpu_percent: float
    memory_mb: float
    memory_percent: float | None = None
    num_threads: int | None = None
    num_fds: int | None = None
    cpu_seconds: float | None = None  # user + system CPU time of the process so far

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any], *, t: float) -> ResourceSample:
        """From ``PluginProcess.get_stats()`` of a running process."""
        return cls(
            t=t,
            cpu_percent=_float(stats.get("cpu_percent")) or 0.0,
            memory_mb=_float(stats.get("memory_mb")) or 0.0,
            memory_percent=_float(stats.get("memory_percent")),
            num_threads=_int(stats.get("num_threads")),
            num_fds=_int(stats.get("num_fds")),
            cpu_seconds=_float(stats.get("cpu_seconds")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "cpu_percent": self.cpu_percent,
            "memory_mb": self.memory_mb,
            "memory_percent": self.memory_percent,
            "num_threads": self.num_threads,
            "num_fds": self.num_fds,
            "cpu_seconds": self.cpu_seconds,
        }

    def history_point(self) -> dict[str, Any]:
        """The entry of ``history`` in a status: time, CPU and memory only, memory rounded."""
        return {"t": self.t, "cpu_percent": self.cpu_percent, "memory_mb": round(self.memory_mb, 1)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResourceSample:
        return cls(
            t=_float(data.get("t")) or 0.0,
            cpu_percent=_float(data.get("cpu_percent")) or 0.0,
            memory_mb=_float(data.get("memory_mb")) or 0.0,
            memory_percent=_float(data.get("memory_percent")),
            num_threads=_int(data.get("num_threads")),
            num_fds=_int(data.get("num_fds")),
            cpu_seconds=_float(data.get("cpu_seconds")),
        )


@dataclass(frozen=True, kw_only=True)
class PluginStatus:
    """One plugin as ``rosey status`` shows it: one row of the table, one entry of ``--json``.

    Resource fields are None while the plugin is not running. ``commands`` to
    ``permission_violations`` are what the plugin reported on its last liveness ping (its own
    counters); ``sandbox`` is NOT the plugin's word: it is what the launcher reported on the
    readiness pipe before any plugin code ran (``sandbox_source`` says so: ``"launcher"``; None
    with no report). ``launcher`` is how the current process was really made (``zygote`` or
    ``spawn``). ``denied_by_nats``/``last_denied`` are what the NATS server logged against it
    (present only once it denied something).
    """

    #: Where ``sandbox`` comes from, in words, for people reading ``rosey status``.
    SANDBOX_SOURCES: ClassVar[dict[str, str]] = {
        "launcher": "reported by the launcher before plugin code ran",
    }

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "name",
        "kind",
        "state",
        "pid",
        "launcher",
        "restarts",
        "cpu_percent",
        "memory_mb",
        "uptime_seconds",
        "last_exit",
    )

    name: str
    state: PluginState
    kind: str = "plugin"  # "plugin" or "adapter" (a chat platform's bridge)
    pid: int | None = None
    restarts: int = 0
    cpu_percent: float | None = None
    memory_mb: float | None = None
    uptime_seconds: float = 0.0
    last_exit: str | None = None
    reason: str | None = None
    ready_ms: float | None = None
    num_threads: int | None = None
    num_fds: int | None = None
    commands: int | None = None
    command_errors: int | None = None
    latency_ms_p50: float | None = None
    permission_violations: int | None = None
    sandbox: str | None = None  # protections in force, comma-separated, as the launcher reported them
    sandbox_source: str | None = None  # "launcher" when ``sandbox`` is known
    launcher: str | None = None  # "zygote" or "spawn": what made the running process
    disk_mb: float | None = None  # its data dir's real blocks, as last measured (with a disk quota)
    denied_by_nats: int | None = None
    last_denied: str | None = None
    cpu_seconds: float | None = None  # CPU time (user + system) of the running process, as last read
    kills: Mapping[str, int] = field(default_factory=dict)  # watchdog kills since start, by kill_cause
    #: What the plugin's source requests and rosey.toml does not grant, as found at its last start
    #: ("read_paths /srv/x", "http GET https://api.example.org/ (why)"); it runs without them.
    not_granted: tuple[str, ...] = ()
    #: issue 16: which replica of its plugin this row is (1-based); None: the plugin's only process.
    replica: int | None = None
    history: tuple[ResourceSample, ...] = field(default=())
    #: s-host: the host it runs on as the hub names it; "(lost)" appended while that host is silent.
    host: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", PluginState(self.state))
        object.__setattr__(self, "history", tuple(self.history))
        object.__setattr__(self, "not_granted", tuple(self.not_granted))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "state": self.state.value,
            "pid": self.pid,
            "restarts": self.restarts,
            "cpu_percent": self.cpu_percent,
            "memory_mb": self.memory_mb,
            "uptime_seconds": self.uptime_seconds,
            "last_exit": self.last_exit,
            "reason": self.reason,
            "ready_ms": self.ready_ms,
            "num_threads": self.num_threads,
            "num_fds": self.num_fds,
            "commands": self.commands,
            "command_errors": self.command_errors,
            "latency_ms_p50": self.latency_ms_p50,
            "permission_violations": self.permission_violations,
            "sandbox": self.sandbox,
            "sandbox_source": self.sandbox_source,
            "launcher": self.launcher,
            "disk_mb": self.disk_mb,
            "cpu_seconds": self.cpu_seconds,
            "kills": dict(self.kills),
            "not_granted": list(self.not_granted),
        }
        if self.replica is not None:  # issue 16: only rows of a plugin with replicas carry it
            data["replica"] = self.replica
        if self.denied_by_nats:
            data["denied_by_nats"] = self.denied_by_nats
            data["last_denied"] = self.last_denied
        data["history"] = [sample.history_point() for sample in self.history]
        if self.host is not None:  # s-host
            data["host"] = self.host
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PluginStatus:
        """Read a status back; raises ValueError only for a state this version does not know."""
        history = data.get("history")
        not_granted = data.get("not_granted")
        return cls(
            name=_str(data.get("name")) or "",
            state=PluginState(data.get("state", PluginState.STOPPED)),
            kind=_str(data.get("kind")) or "plugin",
            pid=_int(data.get("pid")),
            restarts=_int(data.get("restarts")) or 0,
            cpu_percent=_float(data.get("cpu_percent")),
            memory_mb=_float(data.get("memory_mb")),
            uptime_seconds=_float(data.get("uptime_seconds")) or 0.0,
            last_exit=_str(data.get("last_exit")),
            reason=_str(data.get("reason")),
            ready_ms=_float(data.get("ready_ms")),
            num_threads=_int(data.get("num_threads")),
            num_fds=_int(data.get("num_fds")),
            commands=_int(data.get("commands")),
            command_errors=_int(data.get("command_errors")),
            latency_ms_p50=_float(data.get("latency_ms_p50")),
            permission_violations=_int(data.get("permission_violations")),
            sandbox=_str(data.get("sandbox")),
            sandbox_source=_str(data.get("sandbox_source")),
            launcher=_str(data.get("launcher")),
            disk_mb=_float(data.get("disk_mb")),
            denied_by_nats=_int(data.get("denied_by_nats")),
            last_denied=_str(data.get("last_denied")),
            cpu_seconds=_float(data.get("cpu_seconds")),
            replica=_int(data.get("replica")),
            kills={str(k): v for k, v in _mapping(data.get("kills")).items() if _int(v) is not None},
            not_granted=tuple(
                item
                for item in (not_granted if isinstance(not_granted, list) else [])
                if isinstance(item, str)
            ),
            history=tuple(
                ResourceSample.from_dict(point)
                for point in (history if isinstance(history, list) else [])
                if isinstance(point, Mapping)
            ),
            host=_str(data.get("host")),  # s-host
        )


@dataclass(frozen=True, kw_only=True)
class NatsStatus:
    url: str  # credentials redacted
    embedded: bool
    pid: int | None = None  # the embedded server's
    monitor_url: str | None = None
    flood_detection: str | None = None  # "on", or why plugins' publish rates are not watched

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "embedded": self.embedded,
            "pid": self.pid,
            "monitor_url": self.monitor_url,
            "flood_detection": self.flood_detection,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NatsStatus:
        return cls(
            url=_str(data.get("url")) or "",
            embedded=data.get("embedded") is True,
            pid=_int(data.get("pid")),
            monitor_url=_str(data.get("monitor_url")),
            flood_detection=_str(data.get("flood_detection")),
        )


@dataclass(frozen=True, kw_only=True)
class LauncherStatus:
    kind: str  # "zygote" or "spawn": the launcher in use, not merely the configured one
    zygote_pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "zygote_pid": self.zygote_pid}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LauncherStatus:
        return cls(kind=_str(data.get("kind")) or "", zygote_pid=_int(data.get("zygote_pid")))


@dataclass(frozen=True, kw_only=True)
class WatchdogStatus:
    last_sweep_ms: float | None = None  # None before the watchdog runs

    def to_dict(self) -> dict[str, Any]:
        return {"last_sweep_ms": self.last_sweep_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WatchdogStatus:
        return cls(last_sweep_ms=_float(data.get("last_sweep_ms")))


@dataclass(frozen=True, kw_only=True)
class RoseyStatus:
    """A running ``rosey run``: its process, NATS, plugins, launcher and sandbox."""

    pid: int | None
    nats: NatsStatus
    uptime_seconds: float
    plugins: tuple[PluginStatus, ...]
    launcher: LauncherStatus
    sandbox_mode: str
    sandbox_support: Mapping[str, Any]  # what this kernel offers, as ``rosey doctor`` probes it
    watchdog: WatchdogStatus
    # Plugin -> {keys, bytes, max_keys, max_bytes, max_value_bytes}: what each stores (storage service).
    storage: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: The HTTP gateway's counters per plugin (requests, completed, refused, limited, failed, bytes).
    gateway: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: s-remote: on a hub, per host: its state, and what the hub's NATS server refused it
    #: (``denied_by_nats``, ``last_denied``); "?": refusals no host could be named for (``why``).
    hosts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plugins", tuple(self.plugins))

    def without_history(self) -> RoseyStatus:
        """The same status without the plugins' resource history: what a view that draws no plot
        (``rosey top``) asks for; the history is most of the cost of encoding a status."""
        return replace(self, plugins=tuple(replace(p, history=()) for p in self.plugins))

    def plugin(self, name: str) -> PluginStatus | None:
        return next((p for p in self.plugins if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "nats": self.nats.to_dict(),
            "uptime_seconds": self.uptime_seconds,
            "plugins": [plugin.to_dict() for plugin in self.plugins],
            "launcher": self.launcher.to_dict(),
            "sandbox_mode": self.sandbox_mode,
            "sandbox_support": dict(self.sandbox_support),
            "watchdog": self.watchdog.to_dict(),
            "storage": {name: dict(usage) for name, usage in self.storage.items()},
            "gateway": {plugin: dict(counters) for plugin, counters in self.gateway.items()},
            "hosts": {host: dict(row) for host, row in self.hosts.items()},  # s-remote
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoseyStatus:
        plugins = data.get("plugins")
        return cls(
            pid=_int(data.get("pid")),
            nats=NatsStatus.from_dict(_mapping(data.get("nats"))),
            uptime_seconds=_float(data.get("uptime_seconds")) or 0.0,
            plugins=tuple(
                PluginStatus.from_dict(row)
                for row in (plugins if isinstance(plugins, list) else [])
                if isinstance(row, Mapping)
            ),
            launcher=LauncherStatus.from_dict(_mapping(data.get("launcher"))),
            sandbox_mode=_str(data.get("sandbox_mode")) or "",
            sandbox_support=dict(_mapping(data.get("sandbox_support"))),
            watchdog=WatchdogStatus.from_dict(_mapping(data.get("watchdog"))),
            storage={k: dict(_mapping(v)) for k, v in _mapping(data.get("storage")).items()},
            gateway={str(k): dict(_mapping(v)) for k, v in _mapping(data.get("gateway")).items()},
            hosts={str(k): dict(_mapping(v)) for k, v in _mapping(data.get("hosts")).items()},  # s-remote
        )


def unavailable_reason(status: PluginStatus) -> str | None:
    """Why a plugin in ``status`` cannot take a command now, said after its name ("plugin 'x' ...");
    None when it can. One wording for the bot's router and for ``rosey send``."""
    state = status.state
    if state is PluginState.STARTING:
        return "is still starting (its on_start has not finished); try again in a moment"
    if state is PluginState.FAILED:
        return status.reason or "has failed; `rosey status` says why"
    if state is PluginState.BACKOFF:
        return f"is restarting (last exit: {status.last_exit})" if status.last_exit else "is restarting"
    if state in (PluginState.STOPPED, PluginState.STOPPING):
        return "is not running: it was stopped (`rosey start` starts it)"
    if state is PluginState.DISABLED:
        return "is not running: it is disabled in rosey.toml"
    return None
