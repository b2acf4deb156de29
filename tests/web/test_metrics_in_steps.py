"""/metrics made on the event loop in steps: the same text, and the loop runs between the steps."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.rosey.services.command_metrics import CommandMetrics
from bot.rosey.services.router import CommandOutcome, OutcomeKind
from bot.rosey.supervision.status import PluginState, PluginStatus
from bot.rosey.web.metrics import MetricsSnapshot, render_metrics, render_metrics_cooperatively
from bot.rosey.web.sources import WebSources

from .test_web_config import status

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

PLUGINS = 100


def fleet_snapshot() -> MetricsSnapshot:
    """100 running plugins, each with command outcomes and a latency histogram (~3,800 samples)."""
    names = [f"p{i}" for i in range(PLUGINS)]
    commands = CommandMetrics(names)
    for i, name in enumerate(names):
        for kind, elapsed in ((OutcomeKind.RESULT, 0.002 * (i + 1)), (OutcomeKind.ERROR, 0.5)):
            commands.record(
                CommandOutcome(kind=kind, plugin=name, message="m", correlation_id="c", elapsed=elapsed)
            )
    plugins = [
        PluginStatus(
            name=name,
            state=PluginState.RUNNING,
            pid=1000 + i,
            restarts=i % 3,
            memory_mb=20.0 + i,
            cpu_seconds=0.1 * i,
            num_threads=3,
            num_fds=9,
            uptime_seconds=4.0,
            commands=i,
            command_errors=1,
            kills={"memory": 1} if i % 10 == 0 else {},
            disk_mb=0.5,
        )
        for i, name in enumerate(names)
    ]
    current = status(*plugins)
    return MetricsSnapshot.take(
        WebSources(
            status=lambda: current,
            nats_connected=lambda: True,
            started=lambda: True,
            commands=commands.snapshot,
            relay=None,
        )
    )


def without_process_lines(text: bytes) -> bytes:
    """The bot process's own figures (``process_*``) move between two renders: leave them out."""
    return b"".join(line for line in text.splitlines(keepends=True) if b"process_" not in line)


async def test_the_text_is_the_one_generate_latest_writes_in_one_go() -> None:
    snapshot = fleet_snapshot()
    in_steps = await render_metrics_cooperatively(snapshot, samples_per_step=37)  # slices mid-family
    assert without_process_lines(in_steps) == without_process_lines(render_metrics(snapshot))
    families = {f.name: f for f in text_string_to_metric_families(in_steps.decode())}
    assert len(families["rosey_plugin_state"].samples) == PLUGINS * len(PluginState)
    assert len(families["rosey_router_command_duration_seconds"].samples) == PLUGINS * 17  # 15 le, sum, count
    assert "process_cpu_seconds" in families  # the bot's own, from prometheus_client's ProcessCollector


async def test_the_loop_runs_between_the_steps() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    snapshot = fleet_snapshot()
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    # step_seconds=0: a step after every piece of work (the default steps by time, ~1 ms).
    text = await render_metrics_cooperatively(snapshot, step_seconds=0.0)
    task.cancel()
    samples = sum(len(f.samples) for f in text_string_to_metric_families(text.decode()))
    assert samples > 3000
    # At least one step per 10 plugins built and per 150 samples written.
    assert ticks >= PLUGINS // 10 + samples // 150, ticks
