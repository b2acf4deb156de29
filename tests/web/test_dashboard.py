"""The dashboard's HTTP API against a real `rosey run`: who may act and read logs (checked by the
effect: the plugin's pid), the SSE stream's format, `rosey dashboard`; and its parts alone."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.rosey.services.command_metrics import LATENCY_BUCKETS, CommandSnapshot, LatencyHistogram
from bot.rosey.supervision.status import (
    LauncherStatus,
    NatsStatus,
    PluginState,
    PluginStatus,
    RoseyStatus,
    WatchdogStatus,
)
from bot.rosey.web.dashboard import Dashboard
from bot.rosey.web.events import sse
from bot.rosey.web.history import CommandWindow, History, histogram_quantile
from bot.rosey.web.server import build_web_app
from bot.rosey.web.sources import WebSources
from tests.cli.conftest import RunningRosey, rosey, start_run

from .dashboard_fixtures import base_url, bearer, client, plugin_row, send, token, write_hog

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[RunningRosey]:
    write_hog(tmp_path / "plugins", "hog")
    write_hog(tmp_path / "plugins", "calm")
    instance = await start_run(tmp_path)
    try:
        yield instance
    finally:
        if instance.proc.returncode is None:
            instance.proc.terminate()
            await instance.proc.wait()


async def read_events(lines: AsyncIterator[str], count: int) -> list[tuple[str, dict[str, Any]]]:
    """The next ``count`` events of an SSE stream (its ``aiter_lines()``), each (event, parsed data)."""
    events: list[tuple[str, dict[str, Any]]] = []
    name, data = "message", ""
    async for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line == "" and data:
            events.append((name, json.loads(data)))
            name, data = "message", ""
            if len(events) == count:
                break
    return events


# ---------------------------------------------------------------------- against `rosey run`


async def test_actions_are_refused_without_the_token_or_from_another_site(bot: RunningRosey) -> None:
    url, secret = base_url(bot), token(bot)
    port = url.rsplit(":", 1)[1]
    before = await plugin_row(bot, "calm")
    assert before["state"] == "running" and before["pid"]
    refusals = [
        ({}, 401),  # no token
        (bearer("not-the-token"), 401),
        (bearer(secret[:-1]), 401),  # one character short
        ({"Authorization": f"Basic {secret}"}, 401),
        ({**bearer(secret), "Sec-Fetch-Site": "cross-site"}, 403),
        ({**bearer(secret), "Sec-Fetch-Site": "same-site"}, 403),  # another port on localhost
        ({**bearer(secret), "Origin": "http://evil.example"}, 403),
        ({**bearer(secret), "Origin": "http://127.0.0.1:1"}, 403),
        ({**bearer(secret), "Origin": "null"}, 403),
        ({**bearer(secret), "Host": f"evil.example:{port}"}, 421),  # DNS rebinding
        ({**bearer(secret), "Host": "127.0.0.1"}, 421),
    ]
    async with client(url) as http:
        for headers, expected in refusals:
            answer = await http.post("/api/plugins/calm/restart", headers=headers)
            assert answer.status_code == expected, (headers, answer.text)
            assert secret not in answer.text
            assert "Access-Control-Allow-Origin" not in answer.headers
        # Actions are POST only: a GET (a link, an <img>) does nothing.
        assert (await http.get("/api/plugins/calm/restart", headers=bearer(secret))).status_code == 405
        after = await plugin_row(bot, "calm")
        assert (after["pid"], after["state"]) == (before["pid"], "running")

        # The dashboard's own page: same origin, token in the header.
        own = {**bearer(secret), "Origin": url, "Sec-Fetch-Site": "same-origin"}
        answer = await http.post("/api/plugins/calm/restart", headers=own)
        assert answer.status_code == 200, answer.text
        assert answer.json()["plugin"]["state"] == "running"
        restarted = await plugin_row(bot, "calm")
        assert restarted["pid"] not in (None, before["pid"])
        assert answer.json()["plugin"]["pid"] == restarted["pid"]

        # localhost:PORT is the same server; stop and start work as `rosey stop/start` do.
        local = {**bearer(secret), "Host": f"localhost:{port}"}
        assert (await http.post("/api/plugins/calm/stop", headers=local)).status_code == 200
        assert (await plugin_row(bot, "calm"))["state"] == "stopped"
        assert (await http.post("/api/plugins/calm/start", headers=local)).status_code == 200
        assert (await plugin_row(bot, "calm"))["state"] == "running"
        assert (await http.post("/api/plugins/nope/restart", headers=local)).status_code == 404
        assert (await http.post("/api/plugins/calm/explode", headers=local)).status_code == 404


async def test_every_endpoint_refuses_a_foreign_host_and_sends_security_headers(bot: RunningRosey) -> None:
    url = base_url(bot)
    port = url.rsplit(":", 1)[1]
    async with client(url) as http:
        for path in ("/", "/api/status", "/metrics", "/healthz", "/static/dashboard.js"):
            assert (await http.get(path, headers={"Host": f"rebound.example:{port}"})).status_code == 421
            answer = await http.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["X-Frame-Options"] == "DENY"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert answer.headers["Referrer-Policy"] == "no-referrer"
            assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
            assert "'unsafe-inline'" not in answer.headers["Content-Security-Policy"]
            assert "Access-Control-Allow-Origin" not in answer.headers
        page = (await http.get("/")).text
        # No inline script or handler (the CSP would refuse them anyway).
        assert re.search(r"<script(?![^>]*\bsrc=)", page) is None
        assert re.search(r"\son[a-z]+\s*=", page) is None
        assert "http://" not in page and "https://" not in page  # nothing from the internet
        # The vendored plotting library is served by Rosey itself.
        assert (await http.get("/static/vendor/uplot/uPlot.iife.min.js")).status_code == 200
        assert (await http.get("/static/../runtime.py")).status_code in (403, 404)
        assert (await http.get("/static/")).status_code in (403, 404)  # no listing


async def test_the_event_stream_sends_hello_history_then_shared_ticks(bot: RunningRosey) -> None:
    url = base_url(bot)
    async with client(url) as http, http.stream("GET", "/api/events") as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-store"
        events = await asyncio.wait_for(read_events(response.aiter_lines(), 5), 20)
    kinds = [kind for kind, _ in events]
    assert kinds == ["hello", "history", "history", "tick", "tick"], kinds
    hello = events[0][1]
    assert hello["interval"] == 2.0 and hello["window"] == 900.0
    assert isinstance(hello["t"], list)
    for _, history in events[1:3]:
        assert history["name"] in ("hog", "calm")
        assert set(history) == {"name", "cpu", "mem", "p50", "p95"}
        assert len(history["mem"]) == len(hello["t"])
    first, second = events[3][1], events[4][1]
    assert second["seq"] == first["seq"] + 1 and second["t"] > first["t"]
    rows = {row["name"]: row for row in second["plugins"]}
    assert set(rows) == {"hog", "calm"}
    row = rows["hog"]
    for key in (
        "state",
        "pid",
        "host",
        "restarts",
        "last_exit",
        "uptime_seconds",
        "cpu_percent",
        "memory_mb",
        "commands_per_minute",
        "error_rate",
        "p50_ms",
        "p95_ms",
        "nats_denials",
        "sandbox",
    ):
        assert key in row, key
    assert row["state"] == "running" and row["pid"] == (await plugin_row(bot, "hog"))["pid"]
    assert row["host"] == os.uname().nodename
    assert row["memory_mb"] > 0
    assert set(second["points"]) == {"hog", "calm"} and len(second["points"]["hog"]) == 4


async def test_logs_need_the_token_then_show_the_buffer_and_follow(bot: RunningRosey) -> None:
    url, secret = base_url(bot), token(bot)
    await send(bot, "hog", "say", "before-the-view")
    async with client(url) as http:
        for headers, expected in (
            ({}, 401),
            (bearer("wrong"), 401),
            ({**bearer(secret), "Sec-Fetch-Site": "cross-site"}, 403),
        ):
            answer = await http.get("/api/plugins/hog/logs", headers=headers)
            assert answer.status_code == expected
            assert "before-the-view" not in answer.text
            answer = await http.get("/api/plugins/hog/logs?follow=1", headers=headers)
            assert answer.status_code == expected
        answer = await http.get("/api/plugins/hog/logs?lines=50", headers=bearer(secret))
        assert answer.status_code == 200
        assert "before-the-view" in [line["text"] for line in answer.json()["lines"]]
        assert (await http.get("/api/plugins/nope/logs", headers=bearer(secret))).status_code == 404
        assert (await http.get("/api/plugins/hog/logs?lines=x", headers=bearer(secret))).status_code == 400

        async with http.stream("GET", "/api/plugins/hog/logs?follow=1", headers=bearer(secret)) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            seen: list[tuple[str, dict[str, Any]]] = []

            async def until(kind: str, text: str | None = None) -> None:
                name = ""
                async for line in lines:
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        seen.append((name, json.loads(line[6:])))
                        if name == kind and (text is None or seen[-1][1].get("text") == text):
                            return

            await asyncio.wait_for(until("live"), 10)
            assert ("line", "before-the-view") in [(k, d.get("text")) for k, d in seen]
            await send(bot, "hog", "say", "<b>markup</b>", "&amp;")
            await asyncio.wait_for(until("line", "<b>markup</b> &amp;"), 10)


async def test_rosey_dashboard_prints_the_link_and_the_token_stays_private(bot: RunningRosey) -> None:
    url, secret = base_url(bot), token(bot)
    path = bot.workdir / ".rosey" / "runtime.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    code, out, err = await rosey("dashboard", cwd=bot.workdir)
    assert (code, out, err) == (0, f"{url}/#token={secret}\n", "")
    code, out, _ = await rosey("dashboard", "--no-token", cwd=bot.workdir)
    assert (code, out) == (0, f"{url}/\n")
    async with client(url) as http:
        assert (await http.post("/api/plugins/calm/restart", headers=bearer(secret))).status_code == 200
    await send(bot, "hog", "say", "hello")
    bot.proc.terminate()
    stdout, _ = await bot.proc.communicate()
    # `rosey run` never says the token: not on its ready line, its stdout, or its logs.
    assert secret not in bot.ready_line and secret.encode() not in stdout
    assert secret not in (bot.workdir / "rosey-run.log").read_text()
    for log in (bot.workdir / ".rosey" / "logs").glob("*"):
        assert secret not in log.read_text(errors="replace")


async def test_rosey_dashboard_without_web_says_so(tmp_path: Path) -> None:
    (tmp_path / "rosey.toml").write_text("[web]\nenabled = false\n")
    bot = await start_run(tmp_path)
    try:
        code, out, err = await rosey("dashboard", cwd=tmp_path)
        assert (code, out) == (2, "")
        assert err.startswith("rosey: ") and "[web] enabled = false" in err and len(err.splitlines()) == 1
        assert json.loads((tmp_path / ".rosey" / "runtime.json").read_text())["operator_token"] is None
    finally:
        bot.proc.terminate()
        await bot.proc.wait()
    code, _, err = await rosey("dashboard", cwd=tmp_path)
    assert code == 2 and "not running" in err


# ---------------------------------------------------------------------- the parts alone


def _status(*plugins: PluginStatus) -> RoseyStatus:
    return RoseyStatus(
        pid=1,
        nats=NatsStatus(url="nats://127.0.0.1:4222", embedded=True),
        uptime_seconds=1.0,
        plugins=plugins,
        launcher=LauncherStatus(kind="zygote"),
        sandbox_mode="strict",
        sandbox_support={},
        watchdog=WatchdogStatus(),
    )


class FakeSources:
    """Counts how often the status is read: once per tick, however many clients."""

    def __init__(self, plugins: int) -> None:
        self.reads = 0
        self.memory = 10.0
        self.plugins = plugins

    def status(self) -> RoseyStatus:
        self.reads += 1
        return _status(
            *(
                PluginStatus(
                    name=f"p{i}",
                    state=PluginState.RUNNING,
                    pid=100 + i,
                    cpu_percent=1.5,
                    memory_mb=self.memory,
                )
                for i in range(self.plugins)
            )
        )

    def sources(self) -> WebSources:
        return WebSources(status=self.status, nats_connected=lambda: True, started=lambda: True)


@pytest.mark.no_nats
async def test_one_snapshot_per_tick_is_shared_by_every_client() -> None:
    fake = FakeSources(3)
    dashboard = Dashboard(fake.sources(), hostname="here")  # not installed: ticks driven by hand
    app = build_web_app(fake.sources(), extra_routes=dashboard.routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        dashboard.tick()
        url = f"http://127.0.0.1:{server.port}"
        async with client(url) as http:
            streams = [http.stream("GET", "/api/events") for _ in range(4)]
            responses = [await s.__aenter__() for s in streams]
            readers = [r.aiter_lines() for r in responses]
            try:
                starts = [await asyncio.wait_for(read_events(r, 5), 10) for r in readers]
                expected = ["hello"] + ["history"] * 3 + ["tick"]
                assert all([k for k, _ in events] == expected for events in starts)
                reads = fake.reads
                fake.memory = 20.0
                dashboard.tick()
                ticks = [await asyncio.wait_for(read_events(r, 1), 10) for r in readers]
                assert fake.reads == reads + 1  # one read for four clients
                assert all(t == ticks[0] for t in ticks)
                assert ticks[0][0][1]["points"]["p1"] == [1.5, 20.0, None, None]
            finally:
                for s in streams:
                    await s.__aexit__(None, None, None)
    finally:
        await dashboard.stop()
        await server.close()


@pytest.mark.no_nats
def test_the_history_is_a_fixed_size_ring() -> None:
    history = History(interval=2.0, window=10.0)
    assert history.capacity == 6
    for i in range(20):
        late = {"b": (1.0, 1.0, 1.0, 1.0)} if i >= 18 else {}
        history.add(float(i), {"a": (i, i * 2.0, None, None), **late})
    assert history.times() == [14.0, 15.0, 16.0, 17.0, 18.0, 19.0]
    assert history.series("a")["cpu"] == [14, 15, 16, 17, 18, 19]
    assert history.series("a")["p50"] == [None] * 6
    assert history.series("b")["mem"] == [None, None, None, None, 1.0, 1.0]  # appeared late
    frozen = history.copy()
    history.add(20.0, {"b": (2.0, 2.0, 2.0, 2.0)})
    assert "a" not in history.plugins()  # gone from the status: forgotten
    assert frozen.times()[-1] == 19.0 and "a" in frozen.plugins()


@pytest.mark.no_nats
def test_percentiles_and_rates_from_the_routers_counters() -> None:
    assert histogram_quantile(0.5, [0] * len(LATENCY_BUCKETS), 0) is None
    # 10 commands between 1 and 2.5 ms: the median is interpolated inside that bucket.
    cumulative = [0] + [10] * (len(LATENCY_BUCKETS) - 1)
    assert histogram_quantile(0.5, cumulative, 10) == pytest.approx(0.00175)
    assert histogram_quantile(0.99, [0] * len(LATENCY_BUCKETS), 5) == LATENCY_BUCKETS[-1]  # all past 30 s

    def snapshot(results: int, errors: int, fast: int) -> CommandSnapshot:
        buckets = tuple(fast if b < 0.01 else results + errors for b in LATENCY_BUCKETS)
        return CommandSnapshot(
            outcomes={("p", "result"): results, ("p", "timeout"): errors},
            latency={"p": LatencyHistogram(buckets=buckets, count=results + errors, sum_seconds=0.0)},
        )

    window = CommandWindow(interval=2.0, window=60.0)
    window.add(0.0, snapshot(0, 0, 0))
    window.add(30.0, snapshot(20, 0, 20))
    window.add(60.0, snapshot(36, 4, 20))
    rates = window.rates()["p"]
    assert rates.per_minute == 40.0 and rates.error_rate == 0.1
    # 20 of 40 at or below 1 ms, the rest in (5, 10] ms: interpolated inside the buckets.
    assert (rates.p50_ms, rates.p95_ms) == (1.0, 9.5)
    assert window.tick_latency() == {"p": (7.5, 9.75)}  # the last tick: only the 20 slower ones


@pytest.mark.no_nats
def test_an_event_is_one_line_of_json_whatever_the_text() -> None:
    event = sse("line", {"text": "a\n\nevent: tick\ndata: {}\r\n"}, event_id=7)
    assert event.count(b"\n\n") == 1 and event.endswith(b"\n\n")
    head, data = event.split(b"data: ", 1)
    assert head == b"event: line\nid: 7\n"
    assert json.loads(data) == {"text": "a\n\nevent: tick\ndata: {}\r\n"}
