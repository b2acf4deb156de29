"""Zygote vs spawn, side by side in one run: N plugins all ready, and memory per idle plugin.

For each round and each launcher (the order alternates between rounds), N idle plugins are
started at once with ``PluginProcess.start()``; "all ready" is the wall time from the first
``start()`` to the last one returning (each returns when its plugin reported ready). Each
plugin then answers one command, and its USS (memory only it holds: what the system gets back
when it exits) is read with psutil. Prints medians over the rounds; asserts nothing.

``zygote`` starts from a zygote that has finished its imports (as in ``rosey run``, which starts
it before NATS); ``zygote-cold`` includes starting the zygote itself.

    .venv/bin/python bench/zygote_vs_spawn.py [--plugins 50] [--rounds 5] [--sandbox]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.plugins.process.zygote import Zygote
from bot.rosey.plugins.sandbox import SandboxPolicy

IDLE = Path(__file__).resolve().parent / "plugins" / "idle_plugin.py"
MB = 1024 * 1024
MODES = ("zygote", "zygote-cold", "spawn")


async def one_round(
    mode: str, n: int, server: NatsServer, bus: EventBus, state: Path, sandbox: bool
) -> dict[str, float]:
    zygote: Zygote | None = None
    figures: dict[str, float] = {}
    if mode != "spawn":
        zygote = Zygote()
        t0 = time.perf_counter()
        if mode == "zygote":
            await zygote.wait_ready()
            figures["zygote_warm_s"] = time.perf_counter() - t0
    processes = []
    for i in range(n):
        data_dir = state / mode / f"p{i}"
        policy = (
            SandboxPolicy.for_plugin(plugin_file=IDLE, data_dir=data_dir, nats_port=server.port or 4222)
            if sandbox
            else None
        )
        options = ProcessOptions(
            data_dir=data_dir,
            launcher="spawn" if mode == "spawn" else "zygote",
            zygote=zygote,
            sandbox=policy,
            log_output=False,
        )
        processes.append(PluginProcess(f"p{i}", IDLE, server.url, options=options))
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(p.start() for p in processes))
        figures["all_ready_s"] = time.perf_counter() - t0
        figures["ready_each_ms"] = statistics.median(p.ready_seconds or 0.0 for p in processes) * 1000
        await asyncio.gather(
            *(
                bus.request(
                    Subjects.plugin_command(p.plugin_name, "execute"),
                    {"args": ["hi"]},
                    "bench",
                    correlation_id=uuid.uuid4().hex,
                    timeout=10,
                )
                for p in processes
            )
        )
        uss = [psutil.Process(p.pid).memory_full_info().uss for p in processes]
        rss = [psutil.Process(p.pid).memory_info().rss for p in processes]
        figures["uss_mb"] = statistics.median(uss) / MB
        figures["rss_mb"] = statistics.median(rss) / MB
        total = sum(uss)
        if zygote is not None and zygote.pid is not None:
            total += psutil.Process(zygote.pid).memory_full_info().uss
        figures["total_uss_mb"] = total / MB
    finally:
        await asyncio.gather(*(p.stop() for p in processes))
        if zygote is not None:
            await zygote.aclose()
    return figures


async def main(n: int, rounds: int, sandbox: bool) -> None:
    state = Path(tempfile.mkdtemp(prefix="rosey-zygote-bench-"))
    server = NatsServer(NatsServerConfig(work_dir=state / "nats", jetstream=False))
    server.start()
    bus = EventBus(server.url, name="bench-core")
    await bus.connect()
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    try:
        for r in range(rounds):
            order = MODES if r % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                figures = await one_round(mode, n, server, bus, state, sandbox)
                results[mode].append(figures)
                print(
                    f"round {r + 1} {mode:12s} " + " ".join(f"{k}={v:.3f}" for k, v in figures.items()),
                    flush=True,
                )
    finally:
        await bus.disconnect()
        server.stop()

    print(
        f"\nmedians over {rounds} rounds, {n} plugins, "
        f"sandbox={'on' if sandbox else 'off'}, {psutil.cpu_count()} CPUs"
    )
    keys = ["all_ready_s", "ready_each_ms", "uss_mb", "rss_mb", "total_uss_mb", "zygote_warm_s"]
    print(f"{'figure':16s}" + "".join(f"{mode:>14s}" for mode in MODES))
    for key in keys:
        row = []
        for mode in MODES:
            values = [f[key] for f in results[mode] if key in f]
            row.append(f"{statistics.median(values):14.3f}" if values else f"{'-':>14s}")
        print(f"{key:16s}" + "".join(row))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugins", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sandbox", action="store_true", help="apply the default OS sandbox to every plugin")
    args = parser.parse_args()
    asyncio.run(main(args.plugins, args.rounds, args.sandbox))
