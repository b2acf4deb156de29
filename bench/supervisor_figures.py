"""Figures for the supervisor: start -> ready, stats sweeps, crash -> ready, hung-loop
detection, supervisor CPU with idle plugins. Prints medians; run from the repo root:

    .venv/bin/python bench/supervisor_figures.py [--plugins 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.core.event_bus import EventBus
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.services.router import CoreRouter
from bot.rosey.supervision.spec import PluginSpec
from bot.rosey.supervision.status import PluginState
from bot.rosey.supervision.supervisor import Supervisor
from bot.rosey.supervision.watchdog import Watchdog

IDLE = Path(__file__).resolve().parent / "plugins" / "idle_plugin.py"


def med(values: list[float]) -> float:
    return statistics.median(values)


async def main(n_plugins: int, repeats: int) -> dict[str, float]:
    state = Path(tempfile.mkdtemp(prefix="rosey-bench-"))
    server = NatsServer(NatsServerConfig(work_dir=state / "nats", jetstream=False))
    server.start()
    bus = EventBus(server.url, name="bench-core")
    await bus.connect()
    figures: dict[str, float] = {}
    try:
        # 1. PluginProcess.start() -> ready, one plugin at a time.
        ready = []
        for i in range(repeats):
            proc = PluginProcess(
                f"solo{i}", IDLE, server.url, options=ProcessOptions(data_dir=state / "solo")
            )
            t0 = time.perf_counter()
            await proc.start()
            ready.append(time.perf_counter() - t0)
            await proc.stop()
        figures["start_to_ready_ms_p50"] = med(ready) * 1000

        # 2. N plugins under a supervisor.
        def factory(spec: PluginSpec) -> PluginProcess:
            return PluginProcess(
                spec.name, spec.path, server.url, options=ProcessOptions(data_dir=state / spec.name)
            )

        specs = [PluginSpec(name=f"p{i}", path=IDLE) for i in range(n_plugins)]
        supervisor = Supervisor(bus, specs, factory)
        t0 = time.perf_counter()
        results = await supervisor.start_all()
        figures[f"all_{n_plugins}_ready_s"] = time.perf_counter() - t0
        assert all(r is None for r in results.values()), results
        watchdog = Watchdog(supervisor, bus)
        for count in (20, n_plugins):
            subset = Supervisor(None, [], factory)
            subset.plugins = dict(list(supervisor.plugins.items())[:count])
            sweeper = Watchdog(subset, None)
            times = []
            for _ in range(30):
                sweeper.sweep()
                times.append(sweeper.last_sweep_seconds)
            figures[f"stats_sweep_{count}_ms_p50"] = med(times) * 1000

        watchdog.start()
        # 3. Supervisor CPU with the watchdog running over idle plugins (10 s window).
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(10)
        figures[f"supervisor_cpu_percent_{n_plugins}_idle"] = (
            100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        )

        # 4. Crash (SIGKILL) -> exit detected -> restarted -> ready.
        detected, back = [], []
        for i in range(repeats):
            plugin = supervisor.get(f"p{i}")
            assert plugin.process is not None
            seen = asyncio.get_running_loop().create_future()
            plugin.process.add_exit_callback(lambda rc, f=seen: f.done() or f.set_result(time.perf_counter()))
            restarts = plugin.restarts
            t0 = time.perf_counter()
            os.kill(plugin.process.pid, 9)
            detected.append(await seen - t0)
            await supervisor.wait_for_state(
                plugin.name, lambda p, r=restarts: p.state is PluginState.RUNNING and p.restarts > r, 20
            )
            back.append(time.perf_counter() - t0)
        figures["crash_detected_ms_p50"] = med(detected) * 1000
        figures["crash_to_ready_ms_p50"] = med(back) * 1000

        # 5. Hung event loop -> killed (default watchdog: ping 1.5 s, timeout 1 s, 3 misses).
        router = CoreRouter(bus, known_plugins=supervisor.names)
        await router.start()
        hung = []
        for i in range(3):
            name = f"p{n_plugins - 1 - i}"
            restarts = supervisor.get(name).restarts
            t0 = time.perf_counter()
            await router.execute(name, ["block"], timeout=30)
            await supervisor.wait_for_state(name, lambda p, r=restarts: p.restarts > r, 30)
            hung.append(time.perf_counter() - t0)
        figures["hung_loop_to_restart_s_p50"] = med(hung)
        await router.stop()

        t0 = time.perf_counter()
        await watchdog.stop()
        await supervisor.stop_all()
        figures[f"stop_{n_plugins}_s"] = time.perf_counter() - t0
    finally:
        await bus.disconnect()
        server.stop()
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugins", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    result = asyncio.run(main(args.plugins, args.repeats))
    for key, value in result.items():
        print(f"{key:40s} {value:10.2f}")
    print(json.dumps(result))
