"""``python -m bench.replicas``: replicas of a CPU-bound plugin, and the time a reload takes (issue 16).

The real RoseyApp (embedded NATS, sandbox, zygote unless --launcher spawn) from a rosey.toml in a
temporary directory; commands go through a CoreRouter on its own connection, as ``rosey send`` does.

* commands/s: ``bench/plugins/cpu_plugin.py`` burns ``--ms`` of CPU per command on its loop; with
  ``--in-flight`` commands always outstanding for ``--seconds``, for 1, 2 and 4 replicas. The
  router, NATS and the client share the same cores, so the ceiling is the machine, not the plugin.
* reload: ``Supervisor.reload`` (what ``rosey reload NAME`` asks for) while ~200 commands/s flow:
  the call's duration (new process ready + handover + old one drained) and the time from the call
  to the first answer by the new version; failed or lost commands are counted (expected: 0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.rosey.app import RoseyApp
from bot.rosey.config import LAUNCHER_ENV, STATE_DIR_ENV, load_config
from bot.rosey.core.event_bus import EventBus
from bot.rosey.runtime import read_runtime
from bot.rosey.services.router import CoreRouter

PLUGIN = Path(__file__).parent / "plugins" / "cpu_plugin.py"


async def _app(workdir: Path, replicas: int, launcher: str) -> tuple[RoseyApp, EventBus, CoreRouter]:
    plugin = workdir / "cpu.py"
    shutil.copy(PLUGIN, plugin)
    (workdir / "rosey.toml").write_text(
        f'[rosey]\nstate_dir = ".rosey"\nlauncher = "{launcher}"\nentry_points = false\nplugin_dirs = []\n'
        f'log_level = "warning"\n[plugins.cpu]\npath = "{plugin}"\nreplicas = {replicas}\n'
        "max_cpu_percent = 200\n"
    )
    app = RoseyApp(load_config(workdir / "rosey.toml"))
    results = await app.start()
    assert all(error is None for error in results.values()), results
    runtime = read_runtime(app.config.state_dir)
    bus = EventBus(runtime.nats_url, name="bench-replicas", user=runtime.user, password=runtime.password)
    await bus.connect()
    router = CoreRouter(bus, source="bench-replicas")
    await router.start(chat=False)
    return app, bus, router


async def _throughput(router: CoreRouter, ms: float, in_flight: int, seconds: float) -> tuple[float, int]:
    done = failed = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done, failed
        while time.monotonic() < deadline:
            outcome = await router.execute("cpu", [str(ms)], timeout=30)
            done += 1
            failed += not outcome.ok

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done / (time.monotonic() - started), failed


async def replicas_figures(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for replicas in (1, 2, 4):
        with tempfile.TemporaryDirectory(prefix="rosey-bench-replicas-") as tmp:
            app, bus, router = await _app(Path(tmp), replicas, args.launcher)
            try:
                await _throughput(router, args.ms, args.in_flight, 1.0)  # warm-up
                rate, failed = await _throughput(router, args.ms, args.in_flight, args.seconds)
            finally:
                await router.stop()
                await bus.disconnect()
                await app.stop()
        rows.append({"replicas": replicas, "commands_per_s": round(rate, 1), "failed": failed})
        what = f"{args.ms:g} ms CPU each, {args.in_flight} in flight"
        print(f"replicas={replicas}: {rate:8.1f} commands/s ({what}, {failed} failed)")
    return rows


async def _reload_round(
    app: RoseyApp, router: CoreRouter, plugin: Path, version: int
) -> tuple[float, float, int, int]:
    """One reload under ~200 commands/s: (call seconds, call -> first new answer, failed, sent)."""
    assert app.supervisor is not None
    outcomes: list[Any] = []
    stop = asyncio.Event()
    new_seen = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def one() -> None:
        outcome = await router.execute("cpu", ["0.2"], timeout=30)
        outcomes.append(outcome)
        if outcome.data.get("version") == version:
            new_seen.set()

    async def load() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += 1 / 200
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    loader = asyncio.create_task(load())
    await asyncio.sleep(0.5)  # the load's steady state before the reload
    text = PLUGIN.read_text().replace("VERSION = 1", f"VERSION = {version}")
    await asyncio.to_thread(plugin.write_text, text)
    started = time.monotonic()
    await app.supervisor.reload("cpu")
    call = time.monotonic() - started
    await asyncio.wait_for(new_seen.wait(), 30)
    first = time.monotonic() - started
    await asyncio.sleep(0.5)  # and after it
    stop.set()
    await loader
    if tasks:
        await asyncio.wait(set(tasks))
    return call, first, sum(not o.ok for o in outcomes), len(outcomes)


async def reload_figures(args: argparse.Namespace) -> dict[str, Any]:
    call_s, first_s, failed_total, sent_total = [], [], 0, 0
    with tempfile.TemporaryDirectory(prefix="rosey-bench-reload-") as tmp:
        app, bus, router = await _app(Path(tmp), 1, args.launcher)
        try:
            for round_ in range(args.rounds):
                call, first, failed, sent = await _reload_round(app, router, Path(tmp) / "cpu.py", round_ + 2)
                call_s.append(call)
                first_s.append(first)
                failed_total += failed
                sent_total += sent
        finally:
            await router.stop()
            await bus.disconnect()
            await app.stop()
    figures = {
        "reload_call_ms_median": round(statistics.median(call_s) * 1000, 1),
        "reload_to_new_version_ms_median": round(statistics.median(first_s) * 1000, 1),
        "rounds": args.rounds,
        "commands": sent_total,
        "failed_or_lost": failed_total,
    }
    print(
        f"reload ({args.launcher}): call {figures['reload_call_ms_median']} ms, first answer by the new "
        f"version {figures['reload_to_new_version_ms_median']} ms after the call (medians of {args.rounds}); "
        f"{sent_total} commands at ~200/s during the reloads, {failed_total} failed or lost"
    )
    return figures


async def main(args: argparse.Namespace) -> None:
    os.environ.pop(STATE_DIR_ENV, None)
    os.environ[LAUNCHER_ENV] = args.launcher
    logging.basicConfig(level=logging.ERROR)
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start")
    await replicas_figures(args)
    await reload_figures(args)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    parser.add_argument("--launcher", choices=["zygote", "spawn"], default="zygote")
    parser.add_argument("--ms", type=float, default=2.0, help="CPU per command (default 2 ms)")
    parser.add_argument("--in-flight", type=int, default=32, help="commands outstanding (default 32)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per replica count (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="reloads (default 5)")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
