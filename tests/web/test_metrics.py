"""/metrics of a real `rosey run`, parsed with prometheus_client's own parser, against a known run:
commands through `rosey send` (the plugin's counters) and through chat (the router's), a SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.rosey.cli.client import connect
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.runtime import read_runtime
from tests.cli.conftest import rosey, start_run

from .conftest import get, web_url, write_plugin

pytestmark = pytest.mark.timeout(90)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scrape:
    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        self.samples: Samples = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))


async def scrape(url: str) -> Scrape:
    response = await get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape(response.text)


async def scrape_until(url: str, check: Callable[[Scrape], bool], timeout: float = 15.0) -> Scrape:
    """Scrape until ``check`` holds: the plugins' own counters arrive with their liveness pings
    (every 1.5 s), so there is no event to wait on from outside the bot."""
    deadline = time.monotonic() + timeout
    while True:
        result = await scrape(url)
        if check(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never matched; last scrape:\n{sorted(result.samples.items())}")
        await asyncio.sleep(0.2)


async def chat(workdir: Path, *lines: str) -> list[Event]:
    """Say ``lines`` on the console platform, as the console adapter does; return the replies."""
    bus = await connect(read_runtime(workdir / ".rosey"))
    replies: list[Event] = []
    got_all = asyncio.Event()

    async def on_reply(event: Event) -> None:
        replies.append(event)
        if len(replies) == len(lines):
            got_all.set()

    try:
        await bus.subscribe(Subjects.chat_send("console"), on_reply)
        await bus.flush()
        for text in lines:
            data = {"text": text, "user": {"username": "tester"}, "channel": "console", "platform": "console"}
            await bus.publish(Subjects.event("message"), data, source="console-adapter")
        await asyncio.wait_for(got_all.wait(), 10)
    finally:
        await bus.disconnect()
    return replies


async def test_metrics_of_a_known_run(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "echo")
    write_plugin(tmp_path / "plugins", "other")
    (tmp_path / "rosey.toml").write_text('[plugins.other]\nchannels = ["#elsewhere"]\n')
    bot = await start_run(tmp_path)
    try:
        url = web_url(bot)
        first = await scrape(url)
        assert first.types["rosey_plugin_restarts"] == "counter"
        assert first.types["rosey_plugin_resident_memory_bytes"] == "gauge"
        assert first.value("rosey_up") == 1
        assert first.value("rosey_ready") == 1
        assert first.value("rosey_plugin_state", plugin="echo", state="running") == 1
        assert first.value("rosey_plugin_state", plugin="echo", state="failed") == 0
        assert first.value("rosey_plugin_restarts_total", plugin="echo") == 0
        assert first.value("rosey_plugin_nats_denials_total", plugin="echo") == 0
        assert first.value("rosey_plugin_info", plugin="echo", kind="plugin") == 1
        assert "process_cpu_seconds_total" in {name for name, _ in first.samples}  # the bot's own

        # Three commands through `rosey send`, one of them answered with an error and one that
        # spends 50 ms of CPU (a plugin forked from the zygote may not have used a clock tick yet):
        # the plugin's own counters, reported on its liveness pings; CPU from the host's sweep.
        for args in (["a"], ["spin"], ["fail"]):
            code, _, err = await rosey("send", "echo", *args, cwd=tmp_path)
            assert code == (1 if args == ["fail"] else 0), err
        sent = await scrape_until(
            url,
            lambda s: (
                s.value("rosey_plugin_commands_total", plugin="echo") == 3
                and (s.value("rosey_plugin_cpu_seconds_total", plugin="echo") or 0) >= 0.05
            ),
        )
        assert sent.value("rosey_plugin_command_errors_total", plugin="echo") == 1
        assert (sent.value("rosey_plugin_resident_memory_bytes", plugin="echo") or 0) > 5 * 1024 * 1024

        # Chat commands through the router: one answered, one for a plugin nobody runs, and two
        # the router answers itself: !help, and !other refused here (it is for #elsewhere only).
        replies = await chat(tmp_path, "!echo hi", "!nosuchplugin x", "!help", "!other x")
        assert sorted(r.data["kind"] for r in replies) == ["refused", "result", "result", "unknown"]
        routed = await scrape(url)
        assert routed.value("rosey_router_commands_total", plugin="help", outcome="result") == 1
        assert routed.value("rosey_router_commands_total", plugin="other", outcome="refused") == 1
        assert routed.value("rosey_router_command_duration_seconds_count", plugin="other") is None
        assert routed.value("rosey_router_commands_total", plugin="echo", outcome="result") == 1
        assert routed.value("rosey_router_commands_total", plugin="(other)", outcome="unknown") == 1
        assert routed.value("rosey_router_command_duration_seconds_count", plugin="echo") == 1
        assert routed.value("rosey_router_command_duration_seconds_bucket", plugin="echo", le="+Inf") == 1
        assert routed.value("rosey_router_command_duration_seconds_bucket", plugin="echo", le="10.0") == 1
        assert not any("nosuchplugin" in str(labels) for _, labels in routed.samples)  # no user text

        # A crash: SIGKILL of the plugin's pid is counted as a restart once it is back.
        rows = {row["name"]: row for row in (await bot.status())["plugins"]}
        pid = rows["echo"]["pid"]
        os.kill(pid, signal.SIGKILL)
        crashed = await scrape_until(
            url,
            lambda s: (
                s.value("rosey_plugin_restarts_total", plugin="echo") == 1
                and s.value("rosey_plugin_state", plugin="echo", state="running") == 1
            ),
        )
        assert crashed.value("rosey_plugin_restarts_total", plugin="other") == 0
        assert crashed.value("rosey_ready") == 1
    finally:
        bot.proc.terminate()
        await bot.proc.wait()
