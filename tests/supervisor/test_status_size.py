"""The status of a large fleet stays small enough to travel: ``rosey status`` of 1,000 plugins
fits in one NATS message (nats-server's default max_payload, 1 MB), with a trend per plugin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.rosey.supervision.spec import PluginSpec
from bot.rosey.supervision.status import STATUS_HISTORY, ResourceSample, RoseyStatus, history_per_plugin
from bot.rosey.supervision.supervisor import Supervisor

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024


def _fleet(count: int) -> Supervisor:
    def factory(spec: PluginSpec) -> object:
        raise AssertionError("nothing is started here")

    specs = [PluginSpec(name=f"plugin{i:04d}", path=Path("/nonexistent.py")) for i in range(count)]
    supervisor = Supervisor(None, specs, factory)  # type: ignore[arg-type]
    for plugin in supervisor.plugins.values():
        for t in range(120):  # a full history, as after two minutes of sweeps
            plugin.history.append(
                ResourceSample(t=1_700_000_000.123 + t, cpu_percent=12.345, memory_mb=24.567, num_threads=3)
            )
    return supervisor


@pytest.mark.parametrize("count", [10, 1000])
def test_the_status_of_a_fleet_fits_in_one_message_with_a_trend_per_plugin(count: int) -> None:
    supervisor = _fleet(count)
    plugins = supervisor.status()
    size = len(json.dumps([p.to_dict() for p in plugins]).encode())
    assert size < NATS_DEFAULT_MAX_PAYLOAD * 3 // 4, size  # room for the rest of the status
    assert all(len(p.history) == history_per_plugin(count) >= 2 for p in plugins)
    if count <= 50:
        assert all(len(p.history) == STATUS_HISTORY for p in plugins)  # small fleets: unchanged


def test_the_history_asked_for_is_the_history_given() -> None:
    supervisor = _fleet(1000)
    assert all(not p.history for p in supervisor.status(history=0))
    assert all(len(p.history) == STATUS_HISTORY for p in supervisor.status(history=STATUS_HISTORY))


def test_the_trimmed_status_reads_back() -> None:
    [plugin] = _fleet(1).status()
    back = RoseyStatus.from_dict  # the same schema: only the number of points changes
    assert back is not None and plugin.history[-1].t > plugin.history[0].t
