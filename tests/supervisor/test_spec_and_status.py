"""The supervisor's typed records without processes: limits, specs, the status schema and the
limit check the watchdog runs on every sample."""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.config import PluginConfig
from bot.rosey.errors import ConfigError
from bot.rosey.supervision.lifecycle import LifecycleEvent
from bot.rosey.supervision.spec import DEFAULT_CPU_WINDOW_SECONDS, Limits, PluginSpec, RestartPolicy
from bot.rosey.supervision.status import (
    LauncherStatus,
    NatsStatus,
    PluginState,
    PluginStatus,
    ResourceSample,
    RoseyStatus,
    WatchdogStatus,
)
from bot.rosey.supervision.watchdog import add_cpu_reading, limit_violation

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(10)]

# ---------------------------------------------------------------------- Limits and PluginSpec


def test_no_limits_means_nothing_enforced() -> None:
    limits = Limits()
    assert (limits.max_memory_mb, limits.max_cpu_percent, limits.max_open_files) == (None, None, None)
    assert (limits.max_processes, limits.max_threads, limits.max_disk_mb) == (None, None, None)
    assert limits.cpu_window_seconds == DEFAULT_CPU_WINDOW_SECONDS
    assert (limits.max_output_bytes_per_second, limits.max_output_lines_per_second) == (None, None)
    assert PluginSpec(name="echo").limits == Limits()


def test_config_limits_are_the_plugin_tables_values() -> None:
    limits = PluginConfig(name="echo", max_memory_mb=64, max_cpu_percent=50, max_processes=2).limits
    assert limits == Limits(
        max_memory_mb=64,
        max_cpu_percent=50.0,
        cpu_window_seconds=DEFAULT_CPU_WINDOW_SECONDS,  # config's default is the supervisor's
        max_output_bytes_per_second=1024 * 1024,
        max_output_lines_per_second=2000,
        max_open_files=256,
        max_processes=2,
        max_threads=64,
        max_disk_mb=1024,
        max_publish_rate=100_000,
        max_publish_bytes_rate=50_000_000,
        max_subscriptions=1_000,
    )
    assert PluginConfig(name="echo", max_disk_mb=64).limits.max_disk_mb == 64


@pytest.mark.parametrize(
    "bad",
    [
        {"max_memory_mb": 0},
        {"max_memory_mb": "256"},
        {"max_memory_mb": True},
        {"max_threads": 0},
        {"max_disk_mb": 0},
        {"max_disk_mb": 1.5},
        {"max_open_files": -1},
        {"max_processes": -1},
        {"max_cpu_percent": 0},
        {"max_cpu_percent": float("nan")},
        {"cpu_window_seconds": 0},
        {"cpu_window_seconds": None},
        {"max_publish_rate": 0},
        {"max_publish_bytes_rate": float("inf")},
        {"max_subscriptions": 0},
    ],
)
def test_limits_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        Limits(**bad)


def test_max_processes_zero_is_a_limit() -> None:
    assert Limits(max_processes=0).max_processes == 0


def test_plugin_spec_is_validated() -> None:
    assert PluginSpec(name="echo", restart="always").restart is RestartPolicy.ALWAYS  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Limits"):
        PluginSpec(name="echo", limits={"max_memory_mb": 64})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid plugin name"):
        PluginSpec(name="Echo", path=Path("/x.py"))


# ---------------------------------------------------------------------- limit_violation


def sample(**values: Any) -> ResourceSample:
    return ResourceSample(t=0.0, **{"cpu_percent": 1.0, "memory_mb": 30.0, **values})


def test_limit_violation_in_words() -> None:
    none: deque[tuple[float, float]] = deque()
    assert limit_violation(Limits(), sample(memory_mb=10_000, num_threads=999), none, 999) is None
    assert limit_violation(Limits(max_memory_mb=256), sample(memory_mb=301.2), none, None) == (
        "memory 301 MB > limit 256 MB"
    )
    assert (
        limit_violation(Limits(max_threads=20), sample(num_threads=21), none, None) == "threads 21 > limit 20"
    )
    assert limit_violation(Limits(max_open_files=16), sample(num_fds=17), none, None) == (
        "open files 17 > limit 16"
    )
    assert limit_violation(Limits(max_open_files=16), sample(), none, None) is None  # fds unknown
    assert limit_violation(Limits(max_processes=2), sample(), none, 3) == "child processes 3 > limit 2"
    assert limit_violation(Limits(max_processes=2), sample(), none, None) is None  # not counted


def test_cpu_limit_needs_the_whole_window_above_it() -> None:
    limits = Limits(max_cpu_percent=50, cpu_window_seconds=10)
    above = deque((float(t), 97.0) for t in range(11))
    assert limit_violation(limits, sample(), above, None) == "cpu 97% > limit 50% for 10 s"
    assert limit_violation(limits, sample(), deque(list(above)[:10]), None) is None  # 9 s: too short
    dips = deque([*list(above)[:10], (10.0, 10.0)])
    assert limit_violation(limits, sample(), dips, None) is None


@pytest.mark.parametrize("window", [1.0, 2.5, 5.0, 7.0, 10.0, 30.0])
@pytest.mark.parametrize("interval", [0.2, 1.0, 1.001, 1.013, 1.2, 1.7])
def test_a_sustained_spin_breaks_any_window_at_any_sweep_interval(window: float, interval: float) -> None:
    """The watchdog's readings, a sweep interval apart, cover the window; none is judged early."""
    limits = Limits(max_cpu_percent=30, cpu_window_seconds=window)
    readings: deque[tuple[float, float]] = deque()
    for n in range(1000):
        now = n * interval
        add_cpu_reading(readings, now, 150.0, window)
        reason = limit_violation(limits, sample(), readings, None)
        if reason is not None:
            break
    assert reason is not None and reason.startswith("cpu 150% > limit 30% for ")
    assert window <= now < window + interval + 1e-9  # as soon as the window is covered, not later


# ---------------------------------------------------------------------- status schema

ROW_KEYS = [
    "name",
    "kind",
    "state",
    "pid",
    "restarts",
    "cpu_percent",
    "memory_mb",
    "uptime_seconds",
    "last_exit",
    "reason",
    "ready_ms",
    "num_threads",
    "num_fds",
    "commands",
    "command_errors",
    "latency_ms_p50",
    "permission_violations",
    "sandbox",
    "sandbox_source",
    "launcher",
    "disk_mb",
    "cpu_seconds",
    "kills",
    "not_granted",
]


def a_status(**changes: Any) -> PluginStatus:
    values: dict[str, Any] = {
        "name": "echo",
        "state": PluginState.RUNNING,
        "pid": 4242,
        "restarts": 1,
        "cpu_percent": 0.4,
        "memory_mb": 25.1,
        "uptime_seconds": 12.3,
        "last_exit": "exit code 3",
        "ready_ms": 15.2,
        "num_threads": 3,
        "num_fds": 12,
        "commands": 10,
        "command_errors": 1,
        "latency_ms_p50": 0.8,
        "permission_violations": 0,
        "sandbox": "rlimits,seccomp",
        "sandbox_source": "launcher",
        "launcher": "zygote",
        "disk_mb": 1.5,
        "cpu_seconds": 0.75,
        "kills": {"memory": 1},
        "history": (ResourceSample(t=1.5, cpu_percent=0.25, memory_mb=25.14, num_threads=3),),
    }
    return PluginStatus(**{**values, **changes})


def test_plugin_status_keys_are_the_json_users_know() -> None:
    data = a_status().to_dict()
    assert list(data) == [*ROW_KEYS, "history"]
    assert data["state"] == "running"
    assert data["history"] == [{"t": 1.5, "cpu_percent": 0.25, "memory_mb": 25.1}]
    assert "denied_by_nats" not in data  # only once the server denied something
    denied = a_status(denied_by_nats=2, last_denied="subscription >").to_dict()
    assert list(denied) == [*ROW_KEYS, "denied_by_nats", "last_denied", "history"]
    assert PluginStatus.COLUMNS == (
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


def test_plugin_status_round_trips_through_json() -> None:
    status = a_status(denied_by_nats=2, last_denied="publish rosey.x", history=())
    assert PluginStatus.from_dict(json.loads(json.dumps(status.to_dict()))) == status
    with_history = a_status()
    back = PluginStatus.from_dict(json.loads(json.dumps(with_history.to_dict())))
    assert back.history == (ResourceSample(t=1.5, cpu_percent=0.25, memory_mb=25.1),)  # the point's fields


def test_plugin_status_from_dict_tolerates_missing_extra_and_mistyped_keys() -> None:
    status = PluginStatus.from_dict({"name": "echo", "state": "failed", "future_key": 1, "pid": "12"})
    assert status == PluginStatus(name="echo", state=PluginState.FAILED)
    assert PluginStatus.from_dict({}).state is PluginState.STOPPED
    with pytest.raises(ValueError):
        PluginStatus.from_dict({"name": "echo", "state": "exploded"})


def rosey_status() -> RoseyStatus:
    return RoseyStatus(
        pid=100,
        nats=NatsStatus(
            url="nats://127.0.0.1:4222", embedded=True, pid=101, monitor_url=None, flood_detection="on"
        ),
        uptime_seconds=3.5,
        plugins=(a_status(), a_status(name="other", state=PluginState.BACKOFF, pid=None)),
        launcher=LauncherStatus(kind="zygote", zygote_pid=102),
        sandbox_mode="best-effort",
        sandbox_support={"landlock_abi": 7, "seccomp": True},
        watchdog=WatchdogStatus(last_sweep_ms=0.4),
        storage={
            "trivia": {"keys": 3, "bytes": 120, "max_keys": 10, "max_bytes": 4096, "max_value_bytes": 64}
        },
    )


def test_rosey_status_keys_and_round_trip() -> None:
    status = rosey_status()
    data = status.to_dict()
    assert list(data) == [
        "pid",
        "nats",
        "uptime_seconds",
        "plugins",
        "launcher",
        "sandbox_mode",
        "sandbox_support",
        "watchdog",
        "storage",
        "gateway",
        "hosts",  # s-remote: per host, on a hub
    ]
    assert data["gateway"] == {}  # no plugin used the HTTP gateway
    assert list(data["nats"]) == ["url", "embedded", "pid", "monitor_url", "flood_detection"]
    assert data["launcher"] == {"kind": "zygote", "zygote_pid": 102}
    assert data["watchdog"] == {"last_sweep_ms": 0.4}
    back = RoseyStatus.from_dict({"ok": True, **json.loads(json.dumps(data))})  # as the CLI gets it
    assert back.to_dict() == data
    assert back.plugin("other") is not None and back.plugin("nosuch") is None


def test_rosey_status_from_a_sparse_reply() -> None:
    status = RoseyStatus.from_dict({"plugins": [{"name": "echo", "state": "running"}, "junk"]})
    assert [p.name for p in status.plugins] == ["echo"]
    assert (status.pid, status.nats.url, status.watchdog.last_sweep_ms) == (None, "", None)


# ---------------------------------------------------------------------- lifecycle event payload


def test_lifecycle_event_round_trip_and_tolerance() -> None:
    event = LifecycleEvent(
        plugin="echo",
        state=PluginState.CRASHED,
        previous=PluginState.RUNNING,
        reason="exit code 3",
        last_exit="exit code 3",
        returncode=3,
        restarts=2,
        pid=4242,
        timestamp=1234.5,
    )
    data = json.loads(json.dumps(event.to_dict()))
    assert data["state"] == "crashed" and data["previous"] == "running"
    assert LifecycleEvent.from_dict(data) == event
    sparse = LifecycleEvent.from_dict({"reason": "killed by SIGKILL", "x": 1}, plugin="echo", state="crashed")
    assert (sparse.plugin, sparse.state, sparse.reason, sparse.previous) == (
        "echo",
        PluginState.CRASHED,
        "killed by SIGKILL",
        None,
    )


def test_kill_causes_are_read_from_the_watchdogs_reasons() -> None:
    from bot.rosey.supervision.status import kill_cause

    assert kill_cause("memory 301 MB > limit 256 MB") == "memory"
    assert kill_cause("cpu 99% > limit 90% for 5 s") == "cpu"
    assert kill_cause("open files 300 > limit 256") == "open_files"
    assert kill_cause("child processes 2 > limit 0") == "processes"
    assert kill_cause("disk 65 MB > limit 64 MB") == "disk"
    assert kill_cause("unresponsive: missed 3 liveness pings (~8 s)") == "unresponsive"
    assert kill_cause("flood: 52,000 msgs/s > limit 5,000 msgs/s over 2 s") == "flood"
    assert kill_cause("output flood: over the limit of 10 lines/s") == "output"
    assert kill_cause("something new") == "other"


def test_a_status_without_history_keeps_everything_else() -> None:
    status = rosey_status()
    assert status.plugins[0].history  # the fixture has some, else this test proves nothing
    bare = status.without_history()
    assert all(plugin.history == () for plugin in bare.plugins)
    assert bare.to_dict()["plugins"][0]["history"] == []
    assert bare.plugins[0] == dataclasses.replace(status.plugins[0], history=())
    assert dataclasses.replace(bare, plugins=status.plugins) == status
