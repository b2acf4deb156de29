"""``python -m bench.replicas``: replicas of a CPU-bound plugin, and the time a reload takes (issue 16).

The real RoseyApp (embedded NATS, sandbox, zygote unless --launcher spawn) from a rosey.toml in a
temporary directory; commands go through a CoreRouter on its own connection, as ``rosey send`` does.

* commands/s: ``bench/plugins/cpu_plugin.py`` burns ``--ms`` of CPU per command on its loop; with
  ``--in-flight`` commands always outstanding for ``--seconds``, for 1, 2 and 4 replicas. The
  router, NATS and the client share the same cores, so the ceiling is the machine, not the plugin.
* reload: ``Supervisor.reload`` (what ``rosey reload NAME`` asks for) while ~200 commands/s flow:
  the call's duration (new process ready + handover + old one drained) and the time from the call
  to the first answer by the new version; failed or lost commands are counted (expected: 0).
* ``--cli-reload`` (s-spread): the same, measured THROUGH THE CLI, against real ``rosey run``
  processes, one per launcher, side by side, rounds alternating: from the start of the
  ``rosey reload cpu`` command to the first answer by the new version (a probe asks back to back,
  one in flight, from the hub's core identity), and to the command's exit; ``rosey status`` (the
  same CLI start and one control round trip) as the baseline the CLI itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.rosey.app import RoseyApp
from bot.rosey.broker.identities import CORE_INBOX_PREFIX
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


# --- s-spread: reload measured through the CLI, against real `rosey run` processes

ROSEY = [sys.executable, "-m", "bot.rosey"]


async def _rosey_run(workdir: Path, launcher: str) -> tuple[asyncio.subprocess.Process, EventBus]:
    shutil.copy(PLUGIN, workdir / "cpu.py")
    (workdir / "rosey.toml").write_text(
        f'[rosey]\nlauncher = "{launcher}"\nentry_points = false\nplugin_dirs = []\n'
        f'log_level = "warning"\n[plugins.cpu]\npath = "{workdir / "cpu.py"}"\n[web]\nenabled = false\n'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", STATE_DIR_ENV, LAUNCHER_ENV)}
    with (workdir / "rosey-run.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *ROSEY, "run", "--no-chat", cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=log, env=env,
        )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line.startswith(b"Rosey ready"):
        proc.kill()
        raise RuntimeError(f"rosey run ({launcher}) did not get ready: {line!r}; see {workdir}/rosey-run.log")
    info = read_runtime(workdir / ".rosey")
    bus = EventBus(info.nats_url, user=info.user, password=info.password, inbox_prefix=CORE_INBOX_PREFIX)
    await bus.connect()
    return proc, bus


async def _cli(workdir: Path, *args: str) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", STATE_DIR_ENV, LAUNCHER_ENV)}
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *ROSEY, *args, cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env
    )
    _, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"rosey {' '.join(args)}: {err.decode().strip()}")
    return time.perf_counter() - started, proc.returncode or 0


async def _cli_reload_round(workdir: Path, bus: EventBus, version: int) -> tuple[float, float, int, int]:
    """(command start -> first answer by ``version``, command start -> its exit, probes, failed)."""
    text = PLUGIN.read_text().replace("VERSION = 1", f"VERSION = {version}")
    await asyncio.to_thread((workdir / "cpu.py").write_text, text)
    data = {"args": ["0.2"], "user": "bench", "channel": "bench"}
    seen: list[float] = []
    new_version = asyncio.Event()
    probes = failed = 0
    stop = asyncio.Event()

    async def probe() -> None:
        nonlocal probes, failed
        while not stop.is_set():
            probes += 1
            try:
                reply = await bus.request(
                    "rosey.commands.cpu.execute", data, "bench", f"probe-{probes}", timeout=10
                )
            except Exception:  # counted: a reload must not fail a command
                failed += 1
                await asyncio.sleep(0.01)  # a refused request returns at once: do not spin
                continue
            if reply.data.get("version") == version and not seen:
                seen.append(time.perf_counter())
                new_version.set()

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.2)  # the probe's steady state first
    started = time.perf_counter()
    cli, _ = await _cli(workdir, "reload", "cpu")
    await asyncio.wait_for(new_version.wait(), 30)
    stop.set()
    await prober
    return seen[0] - started, cli, probes, failed


async def cli_reload_figures(args: argparse.Namespace) -> dict[str, Any]:
    launchers = ("zygote", "spawn")
    work = Path(tempfile.mkdtemp(prefix="rosey-bench-cli-reload-"))
    running: dict[str, tuple[asyncio.subprocess.Process, EventBus]] = {}
    serving: dict[str, list[float]] = {name: [] for name in launchers}
    exits: dict[str, list[float]] = {name: [] for name in launchers}
    baseline: dict[str, list[float]] = {name: [] for name in launchers}
    probes = dict.fromkeys(launchers, 0)
    failed = dict.fromkeys(launchers, 0)
    try:
        for name in launchers:
            (work / name).mkdir()
            running[name] = await _rosey_run(work / name, name)
        for round_ in range(args.rounds):
            order = launchers if round_ % 2 == 0 else launchers[::-1]
            for name in order:
                first, cli, sent, lost = await _cli_reload_round(work / name, running[name][1], round_ + 2)
                serving[name].append(first)
                exits[name].append(cli)
                probes[name] += sent
                failed[name] += lost
                baseline[name].append((await _cli(work / name, "status"))[0])
    finally:
        for proc, bus in running.values():
            with contextlib.suppress(Exception):
                await bus.disconnect()
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 1)

    figures: dict[str, Any] = {"rounds": args.rounds}
    print(f"`rosey reload cpu` against real `rosey run`s, medians of {args.rounds} rounds, alternating:")
    for name in launchers:
        figures[name] = {
            "to_new_version_serving_ms": ms(serving[name]),
            "cli_exit_ms": ms(exits[name]),
            "cli_status_baseline_ms": ms(baseline[name]),
            "probes": probes[name],
            "failed": failed[name],
        }
        row = figures[name]
        print(
            f"  {name:6}: new version serving {row['to_new_version_serving_ms']} ms after the command "
            f"started; command exits at {row['cli_exit_ms']} ms (`rosey status`: "
            f"{row['cli_status_baseline_ms']} ms); {row['probes']} probes, {row['failed']} failed"
        )
    return figures


# --- end s-spread


async def main(args: argparse.Namespace) -> None:
    os.environ.pop(STATE_DIR_ENV, None)
    if args.cli_reload:  # s-spread
        print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start")
        await cli_reload_figures(args)
        return
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
    parser.add_argument(
        "--cli-reload",
        action="store_true",
        help="only the reload through `rosey reload NAME` against real `rosey run`s (both launchers)",
    )
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
