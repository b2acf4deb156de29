"""The supervisor's typed records without processes: limits and specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.rosey.config import PluginConfig
from bot.rosey.errors import ConfigError
from bot.rosey.supervision.spec import DEFAULT_CPU_WINDOW_SECONDS, Limits, PluginSpec, RestartPolicy

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(10)]

# ---------------------------------------------------------------------- Limits and PluginSpec


def test_no_limits_means_nothing_enforced() -> None:
    limits = Limits()
    assert (limits.max_memory_mb, limits.max_cpu_percent, limits.max_open_files) == (None, None, None)
    assert (limits.max_processes, limits.max_threads) == (None, None)
    assert limits.cpu_window_seconds == DEFAULT_CPU_WINDOW_SECONDS
    assert PluginSpec(name="echo").limits == Limits()


def test_config_limits_are_the_plugin_tables_values() -> None:
    limits = PluginConfig(name="echo", max_memory_mb=64, max_cpu_percent=50, max_processes=2).limits
    assert limits == Limits(
        max_memory_mb=64,
        max_cpu_percent=50.0,
        cpu_window_seconds=DEFAULT_CPU_WINDOW_SECONDS,  # config's default is the supervisor's
        max_open_files=256,
        max_processes=2,
        max_threads=64,
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"max_memory_mb": 0},
        {"max_memory_mb": "256"},
        {"max_memory_mb": True},
        {"max_threads": 0},
        {"max_open_files": -1},
        {"max_processes": -1},
        {"max_cpu_percent": 0},
        {"max_cpu_percent": float("nan")},
        {"cpu_window_seconds": 0},
        {"cpu_window_seconds": None},
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
