"""The collector against a status it is handed: every family, its type and labels, nothing kept."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.rosey.services.chat_relay import RelayStats
from bot.rosey.services.command_metrics import OTHER_PLUGIN, CommandMetrics
from bot.rosey.services.router import CommandOutcome, OutcomeKind
from bot.rosey.supervision.status import PluginState, PluginStatus, WatchdogStatus
from bot.rosey.web.metrics import FAMILIES, MetricsSnapshot, render_metrics
from bot.rosey.web.sources import WebSources

from .test_web_config import status

pytestmark = pytest.mark.no_nats


def outcome(plugin: str, kind: OutcomeKind, elapsed: float) -> CommandOutcome:
    return CommandOutcome(kind=kind, plugin=plugin, message="m", correlation_id="c", elapsed=elapsed)


def test_every_family_with_its_values() -> None:
    commands = CommandMetrics(["trivia"])
    commands.record(outcome("trivia", OutcomeKind.RESULT, 0.003))
    commands.record(outcome("trivia", OutcomeKind.TIMEOUT, 10.2))
    commands.record(outcome("typo-by-a-user", OutcomeKind.UNKNOWN, 0.0001))
    relay = RelayStats(relayed_by_adapter={"libera": 5}, malformed_by_adapter={"libera": 1})
    current = status(
        PluginStatus(
            name="trivia",
            state=PluginState.RUNNING,
            pid=10,
            restarts=2,
            memory_mb=20.0,
            cpu_seconds=1.5,
            num_threads=3,
            num_fds=9,
            uptime_seconds=4.0,
            commands=7,
            command_errors=1,
            denied_by_nats=3,
            kills={"memory": 1, "unresponsive": 1},
            disk_mb=2.0,
        ),
        PluginStatus(name="libera", kind="adapter", state=PluginState.FAILED, reason="bad password"),
    )
    current = type(current)(
        **{
            **current.__dict__,
            "watchdog": WatchdogStatus(last_sweep_ms=1.5),
            "storage": {"trivia": {"keys": 3, "bytes": 120, "max_keys": 10, "max_bytes": 4096}},
            "gateway": {
                "trivia": {
                    "requests": 4,
                    "completed": 2,
                    "refused": 1,
                    "limited": 0,
                    "failed": 1,
                    "bytes_in": 300,
                    "bytes_out": 20,
                }
            },
        }
    )
    sources = WebSources(
        status=lambda: current,
        nats_connected=lambda: True,
        started=lambda: True,
        commands=commands.snapshot,
        relay=lambda: relay,
    )
    text = render_metrics(MetricsSnapshot.take(sources)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    # Beside Rosey's families, prometheus_client's process_* of the bot process itself.
    assert all(name.startswith("process_") for name in set(families) - set(FAMILIES))
    for name, (kind, labels, _) in FAMILIES.items():
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == set(labels), (name, sample)
    assert value("rosey_watchdog_sweep_seconds") == 0.0015
    assert value("rosey_plugin_disk_bytes", plugin="trivia") == 2 * 1024 * 1024
    assert value("rosey_ready") == 0  # the adapter is failed
    assert value("rosey_plugin_state", plugin="libera", state="failed") == 1
    assert value("rosey_plugin_info", plugin="libera", kind="adapter") == 1
    assert value("rosey_plugin_restarts_total", plugin="trivia") == 2
    assert value("rosey_plugin_cpu_seconds_total", plugin="trivia") == 1.5
    assert value("rosey_plugin_resident_memory_bytes", plugin="trivia") == 20 * 1024 * 1024
    assert value("rosey_plugin_nats_denials_total", plugin="trivia") == 3
    assert value("rosey_plugin_watchdog_kills_total", plugin="trivia", reason="memory") == 1
    assert value("rosey_plugin_watchdog_kills_total", plugin="trivia", reason="unresponsive") == 1
    assert value("rosey_plugin_commands_total", plugin="trivia") == 7
    assert value("rosey_router_commands_total", plugin="trivia", outcome="timeout") == 1
    assert value("rosey_router_commands_total", plugin=OTHER_PLUGIN, outcome="unknown") == 1
    assert value("rosey_router_command_duration_seconds_bucket", plugin="trivia", le="0.005") == 1
    assert value("rosey_router_command_duration_seconds_bucket", plugin="trivia", le="10.0") == 1
    assert value("rosey_router_command_duration_seconds_bucket", plugin="trivia", le="+Inf") == 2
    assert value("rosey_router_command_duration_seconds_sum", plugin="trivia") == pytest.approx(10.203)
    assert value("rosey_adapter_events_total", adapter="libera", result="relayed") == 5
    assert value("rosey_adapter_events_total", adapter="libera", result="malformed") == 1
    assert value("rosey_storage_bytes", plugin="trivia") == 120
    assert value("rosey_gateway_requests_total", plugin="trivia") == 4
    assert value("rosey_gateway_results_total", plugin="trivia", result="refused") == 1
    assert value("rosey_gateway_received_bytes_total", plugin="trivia") == 300
    # A plugin that is not running has no process figures, rather than zeros.
    assert ("rosey_plugin_resident_memory_bytes", (("plugin", "libera"),)) not in samples
    assert "typo-by-a-user" not in text
