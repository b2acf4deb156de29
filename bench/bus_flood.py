"""``python -m bench.bus_flood``: what a plugin flooding the bus does to the core and its neighbours.

The real :class:`RoseyApp` (embedded nats-server, one NATS user per plugin, OS sandbox) runs a
flooding plugin (``tests/security/fixtures/flood_plugin.py``) beside the canary. While the
flood runs for ``--seconds``, the canary gets one command after another, the watchdog pings
both, and this script records, per scenario:

* canary: commands, failures, latency p50/p99/max, restarts (the supervisor's count);
* the watchdog's ping round trips to the canary (max), and the pings it counted as missed;
* the core's event-loop lag (a 10 ms timer's overshoot: p99, max);
* CPU of the nats-server, the core and the flooder (% of one core) and the flooder's in msgs/s
  and bytes/s as the server counts them (``/connz``);
* how the flooder ended (its last exit, from the supervisor).

Examples:  python -m bench.bus_flood
           python -m bench.bus_flood --launcher spawn --mode denied --size 100 --seconds 8
           python -m bench.bus_flood --echo   (a legitimate busy plugin: echo at full command rate)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from bench.harness import REPO_ROOT, percentile
from bot.rosey.app import RoseyApp
from bot.rosey.config import STATE_DIR_ENV, load_config
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.errors import NoResponders, RequestTimeout
from bot.rosey.runtime import read_runtime
from bot.rosey.services.router import CoreRouter

FIXTURES = REPO_ROOT / "tests" / "security" / "fixtures"
FLOOD = FIXTURES / "flood_plugin.py"
CANARY = FIXTURES / "canary_plugin.py"
ECHO = REPO_ROOT / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"


def _toml(launcher: str, plugins: dict[str, dict[str, Any]], monitor: bool) -> str:
    lines = [
        "[rosey]",
        'state_dir = ".rosey"',
        'sandbox = "best-effort"',
        f'launcher = "{launcher}"',
        "entry_points = false",
        "plugin_dirs = []",
        "[nats]",
        f"monitor = {'true' if monitor else 'false'}",
    ]
    for name, table in plugins.items():
        lines.append(f"[plugins.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


class LoopLag:
    """The overshoot of a 10 ms timer: how long a ready callback waits for the loop."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            self.samples.append(time.perf_counter() - started - 0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _connz(monitor_url: str | None) -> dict[str, tuple[int, int]]:
    """authorized_user -> (in_msgs, in_bytes), summed over its connections."""
    if monitor_url is None:
        return {}
    with urllib.request.urlopen(f"{monitor_url}/connz?auth=true&limit=1024", timeout=2) as response:
        data = json.load(response)
    totals: dict[str, tuple[int, int]] = {}
    for conn in data.get("connections") or []:
        user = conn.get("authorized_user") or ""
        msgs, size = totals.get(user, (0, 0))
        totals[user] = (msgs + int(conn.get("in_msgs", 0)), size + int(conn.get("in_bytes", 0)))
    return totals


def _instrument_pings(app: RoseyApp, rtts: dict[str, list[float]], missed: dict[str, int]) -> None:
    """Record every watchdog ping's round trip (wrapping the bus the watchdog pings on)."""
    watchdog = app.watchdog
    assert watchdog is not None
    bus = watchdog.bus
    assert bus is not None
    original: Callable[..., Awaitable[Event]] = bus.request

    async def timed(subject: str, *args: Any, **kwargs: Any) -> Event:
        if not subject.startswith("rosey.control."):
            return await original(subject, *args, **kwargs)
        plugin = subject.split(".")[2]
        started = time.perf_counter()
        try:
            return await original(subject, *args, **kwargs)
        except (RequestTimeout, NoResponders):
            missed[plugin] = missed.get(plugin, 0) + 1
            raise
        finally:
            rtts.setdefault(plugin, []).append(time.perf_counter() - started)

    bus.request = timed  # type: ignore[method-assign]


async def scenario(
    launcher: str,
    mode: str,
    size: int,
    seconds: float,
    *,
    echo: bool,
    monitor: bool,
    in_flight: int,
    connections: int = 1,
    flooders: int = 1,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rosey-flood-") as tmp:
        workdir = Path(tmp)
        busy = ["echo"] if echo else ["flood", *(f"flood{i}" for i in range(2, flooders + 1))]
        plugins: dict[str, dict[str, Any]] = {
            name: {"path": str(ECHO if echo else FLOOD), "max_cpu_percent": 200} for name in busy
        }
        if mode == "chat":
            for name in busy:
                plugins[name]["publish"] = ["rosey.events.message"]
        plugins["canary"] = {"path": str(CANARY)}
        (workdir / "rosey.toml").write_text(_toml(launcher, plugins, monitor))
        config = load_config(workdir / "rosey.toml")
        app = RoseyApp(config)
        results = await app.start()
        assert all(r is None for r in results.values()), results
        assert app.supervisor is not None
        runtime = read_runtime(config.state_dir)
        core = EventBus(runtime.nats_url, name="bench-observer", user=runtime.user, password=runtime.password)
        await core.connect()
        router = CoreRouter(core, source="bench")
        rtts: dict[str, list[float]] = {}
        missed: dict[str, int] = {}
        _instrument_pings(app, rtts, missed)
        lag = LoopLag()
        lag.start()
        server = psutil.Process(app.server.pid) if app.server and app.server.pid else None
        me = psutil.Process()
        busy_procs = [psutil.Process(app.supervisor.get(n).process.pid) for n in busy]  # type: ignore[union-attr]
        for proc in (server, me, *busy_procs):
            if proc is not None:
                proc.cpu_percent(None)
        monitor_url = app.server.monitor_url if app.server else None
        before = _connz(monitor_url)
        canary_latencies: list[float] = []
        canary_failures: list[str] = []
        stop = asyncio.Event()

        async def canary() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                outcome = await router.execute("canary", [f"t{n}"], timeout=5.0)
                canary_latencies.append(outcome.elapsed)
                if not outcome.ok:
                    canary_failures.append(f"{outcome.kind.value}: {outcome.message}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)

        echo_done = 0
        echo_failed = 0

        async def echo_load() -> None:
            nonlocal echo_done, echo_failed
            while not stop.is_set():
                outcome = await router.execute("echo", ["hello", "world"], timeout=5.0)
                echo_done += 1
                echo_failed += not outcome.ok

        started = time.monotonic()
        tasks = [asyncio.create_task(canary())]
        if echo:
            tasks += [asyncio.create_task(echo_load()) for _ in range(in_flight)]
        else:
            for name in busy:
                if connections > 1:
                    outcome = await router.execute(name, ["connections", str(connections)], timeout=5.0)
                    assert outcome.ok, outcome
                outcome = await router.execute(name, [mode, str(size)], timeout=5.0)
                assert outcome.ok, outcome
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        elapsed = time.monotonic() - started
        after = _connz(monitor_url)
        cpu = {
            "nats_server": server.cpu_percent(None) if server else None,
            "core": me.cpu_percent(None),
            **{
                n: p.cpu_percent(None) if p.is_running() else None
                for n, p in zip(busy, busy_procs, strict=True)
            },
        }
        stop.set()
        await asyncio.gather(*tasks)
        await lag.stop()
        canary_row = app.supervisor.get("canary")
        report: dict[str, Any] = {
            "launcher": launcher,
            "scenario": "echo" if echo else f"{flooders}x {mode}/{size}B/{connections}conn",
            "seconds": round(elapsed, 1),
            "canary_commands": len(canary_latencies),
            "canary_failures": len(canary_failures),
            "canary_failure_sample": canary_failures[:2],
            "canary_p50_ms": round(percentile(canary_latencies, 50) * 1000, 1),
            "canary_p99_ms": round(percentile(canary_latencies, 99) * 1000, 1),
            "canary_max_ms": round(max(canary_latencies) * 1000, 1),
            "canary_restarts": canary_row.restarts,
            "canary_last_exit": canary_row.last_exit,
            "ping_rtt_max_ms_canary": round(max(rtts.get("canary", [0])) * 1000, 1),
            "pings_missed": missed,
            "loop_lag_p99_ms": round(percentile(lag.samples, 99) * 1000, 1),
            "loop_lag_max_ms": round(max(lag.samples) * 1000, 1),
            "cpu_percent": cpu,
        }
        for name in busy:
            user = f"plugin_{name}"
            msgs0, bytes0 = before.get(user, (0, 0))
            msgs1, bytes1 = after.get(user, (0, 0))
            row = app.supervisor.get(name)
            report[name] = {
                "in_msgs_per_s": round((msgs1 - msgs0) / elapsed) if after else None,
                "in_bytes_per_s": round((bytes1 - bytes0) / elapsed) if after else None,
                "denials_logged": app.server.violations.get(user) if app.server else None,
                "restarts": row.restarts,
                "last_exit": row.last_exit,
            }
        if echo:
            report["echo_commands_per_s"] = round(echo_done / elapsed)
            report["echo_failed"] = echo_failed
        await core.disconnect()
        await app.stop()
        return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--launcher", choices=("zygote", "spawn", "both"), default="both")
    parser.add_argument("--mode", default="all", help="events | results | denied | mixed | all")
    parser.add_argument("--size", type=int, action="append", help="payload bytes (repeatable)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--echo", action="store_true", help="echo at full command rate instead of a flood")
    parser.add_argument("--in-flight", type=int, default=100, help="echo commands in flight")
    parser.add_argument("--flooders", type=int, default=1, help="flooding plugins at once")
    parser.add_argument("--connections", type=int, default=1, help="flood connections of the plugin")
    parser.add_argument("--log-level", default="error", help="the core's log level (to --log-file)")
    parser.add_argument("--log-file", default=os.devnull, help="where the core logs (as rosey run would)")
    parser.add_argument("--no-monitor", action="store_true", help="leave [nats] monitor off")
    args = parser.parse_args()
    os.environ.pop(STATE_DIR_ENV, None)
    logging.basicConfig(level=args.log_level.upper(), filename=args.log_file)
    launchers = ("zygote", "spawn") if args.launcher == "both" else (args.launcher,)
    modes = ("events", "results", "denied", "mixed") if args.mode == "all" else (args.mode,)
    sizes = args.size or [100, 60_000]
    runs: list[tuple[str, str, int]] = []
    for launcher in launchers:
        if args.echo:
            runs.append((launcher, "echo", 0))
        else:
            runs += [(launcher, mode, size) for mode in modes for size in sizes]
    for launcher, mode, size in runs:
        report = asyncio.run(
            scenario(
                launcher,
                mode,
                size,
                args.seconds,
                echo=args.echo,
                monitor=not args.no_monitor,
                in_flight=args.in_flight,
                connections=args.connections,
                flooders=args.flooders,
            )
        )
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
