"""The bot at rest with an operator watching: 100 idle plugins and one dashboard client.

The real :class:`~bot.rosey.app.RoseyApp` (zygote launcher, sandbox on, watchdog on, web server
on 127.0.0.1) runs 100 idle plugins in a child process of its own (so that nothing else of the
benchmark shares its CPU figure or its event loop). One client, in a second process, watches it
as the dashboard does: connected to the dashboard's event stream at :data:`STREAM_PATH`
(``/api/events``, server-sent events). With ``STREAM_PATH = None``, a placeholder instead scrapes
``/metrics`` every 15 s and asks for ``status`` (as ``rosey status`` does) every 2 s: the client
used for the before/after figures with code older than the dashboard.

Measured after the plugins are ready and the watchdog has run a few seconds, in two windows at
rest (both with the client watching):
  * CPU: the bot process's CPU (every thread, ``/proc/self/task/*/schedstat``) over the window, in
    % of one core, with only the bot's own loop-lag ticker running;
  * loop lag: a 5 ms ticker on the bot's loop (its own cost would inflate the CPU figure, hence
    the second window): how late each tick woke, max and p99.

Targets (issue 14): CPU < 5 % of one core, loop lag max < 15 ms.

    python -m bench.dashboard                      # current code, one round, prints the figures
    python -m bench.dashboard --baseline HEAD~3    # also the code of HEAD~3 (git archive), rounds
                                                   # interleaved, medians: before/after in one run
    python -m bench --only dashboard               # the ``dashboard`` section of ``make bench``

This file must run as a plain script too (``python bench/dashboard.py --child``), importing only
``bot`` and the standard library at module level: a baseline round imports ``bot`` from an old tree.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The dashboard's server-sent-events path. None: the placeholder client (/metrics every 15 s,
#: status every 2 s), for code older than the dashboard.
STREAM_PATH: str | None = "/api/events"
#: Header carrying the operator token to the stream, if the dashboard asks for one (runtime file).
STREAM_TOKEN_HEADER = "Authorization"

PLUGINS = 100
SCRAPE_EVERY = 15.0
#: The placeholder's ``status`` asks, seconds apart; 0: none (``BENCH_DASH_STATUS_EVERY``, to see
#: what they cost: each one is ``status()`` with 60 points of history per plugin, as JSON).
STATUS_EVERY = float(os.environ.get("BENCH_DASH_STATUS_EVERY", "2.0"))
SETTLE_SECONDS = 5.0  # after all ready: first sweeps, first pings, the client's first scrape
LAG_TICK = 0.005

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IDLE_PLUGIN = HERE / "plugins" / "idle_plugin.py"
SELF = str(Path(__file__).resolve())


# ---------------------------------------------------------------------- in the bot's process


def _toml(state: Path, count: int) -> str:
    lines = [
        "[rosey]",
        f"state_dir = {json.dumps(str(state))}",
        "entry_points = false",
        "plugin_dirs = []",
        'launcher = "zygote"',
        "",
        "[nats]",
        "monitor = false",
        "",
        "[web]",
        "enabled = true",
        "port = 0",
        "",
    ]
    for i in range(count):
        lines += [f"[plugins.p{i}]", f"path = {json.dumps(str(IDLE_PLUGIN))}", ""]
    return "\n".join(lines)


def _thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process (by native id), ns resolution."""
    seconds = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/schedstat") as f:
            seconds[int(tid)] = int(f.read().split()[0]) / 1e9
    return seconds


def _by_thread_name(before: dict[int, float], after: dict[int, float], wall: float) -> dict[str, float]:
    """% of one core per thread name over the window (asyncio's waitpid threads summed)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    share: dict[str, float] = {}
    for tid, cpu in after.items():
        # Numbered pools (asyncio's waitpid-N threads, executor workers) summed under one name.
        name = "main (event loop)" if tid == os.getpid() else re.sub(r"[-_]?\d+$", "", names.get(tid, "?"))
        share[name] = share.get(name, 0.0) + 100 * (cpu - before.get(tid, 0.0)) / wall
    return dict(sorted(((k, round(v, 3)) for k, v in share.items() if v >= 0.01), key=lambda kv: -kv[1]))


async def _lag_probe(duration: float, tick: float) -> list[float]:
    """Lateness (seconds) of each ``sleep(tick)`` on this loop over ``duration``."""
    clock = time.perf_counter
    late = []
    stop_at = clock() + duration
    while clock() < stop_at:
        t0 = clock()
        await asyncio.sleep(tick)
        late.append(clock() - t0 - tick)
    return late


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def bot_round(count: int, window: float) -> dict[str, Any]:
    """Run the bot with ``count`` idle plugins and the client; measure; return the figures."""
    from bot.rosey.app import RoseyApp
    from bot.rosey.config import LAUNCHER_ENV, STATE_DIR_ENV, load_config

    for variable in (STATE_DIR_ENV, LAUNCHER_ENV):
        os.environ.pop(variable, None)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rosey-dash-bench-") as tmp:
        work = Path(tmp)
        (work / "rosey.toml").write_text(_toml(work / ".rosey", count))
        app = RoseyApp(load_config(work / "rosey.toml"))
        client: asyncio.subprocess.Process | None = None
        try:
            t0 = time.perf_counter()
            results = await app.start()
            out["ready_s"] = time.perf_counter() - t0
            failed = {n: str(e) for n, e in results.items() if e is not None}
            if failed:
                name, error = next(iter(failed.items()))
                raise RuntimeError(f"{len(failed)} plugins failed to start, e.g. {name}: {error}")
            try:  # what `rosey run` does once started (absent from older trees: their baseline)
                from bot.rosey.supervision.heap import freeze_startup_objects
            except ImportError:
                out["frozen_objects"] = 0
            else:
                out["frozen_objects"] = freeze_startup_objects()
            status = app.status()
            out["launcher"] = status.launcher.kind
            out["sandbox"] = status.sandbox_mode
            assert app.web_url is not None, "the web server is off"
            client = await asyncio.create_subprocess_exec(
                *[sys.executable, SELF, "--client", app.web_url, str(work / ".rosey")],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            await asyncio.sleep(SETTLE_SECONDS)
            if client.returncode is not None:
                raise RuntimeError("the dashboard client exited early")
            cpu0, wall0 = _thread_cpu(), time.perf_counter()
            await asyncio.sleep(window)
            cpu1, wall = _thread_cpu(), time.perf_counter() - wall0
            out["cpu_percent"] = 100 * (sum(cpu1.values()) - sum(cpu0.values())) / wall
            out["cpu_by_thread"] = _by_thread_name(cpu0, cpu1, wall)
            # Beside the bot, an idle loop in a process of its own runs the same probe: the lag
            # this machine causes by itself (other work on the CPUs), for comparison.
            floor = await asyncio.create_subprocess_exec(
                *[sys.executable, SELF, "--floor", str(window)], stdout=asyncio.subprocess.PIPE
            )
            pauses: list[tuple[int, float]] = []  # (generation, seconds) of each collection
            began: list[float] = []

            def on_gc(phase: str, info: dict[str, int]) -> None:
                # CPU time of the collection (this thread's): on a loaded machine its wall time
                # is mostly waiting for a CPU, which the idle loop beside measures.
                if phase == "start":
                    began.append(time.thread_time())
                elif began:
                    pauses.append((info["generation"], time.thread_time() - began.pop()))

            gc.callbacks.append(on_gc)
            late = await _lag_probe(window, LAG_TICK)
            gc.callbacks.remove(on_gc)
            out["gc_pause_max_cpu_ms"] = max((p for _, p in pauses), default=0.0) * 1000
            out["gc2_count"] = sum(1 for g, _ in pauses if g == 2)
            out["gc2_pause_max_cpu_ms"] = max((p for g, p in pauses if g == 2), default=0.0) * 1000
            out["gc_objects"] = len(gc.get_objects())
            floor_out, _ = await floor.communicate()
            floor_late = json.loads(floor_out.decode())
            out["floor_lag_max_ms"] = max(floor_late) * 1000
            out["floor_lag_p99_ms"] = _percentile(floor_late, 99) * 1000
            out["lag_max_ms"] = max(late) * 1000
            out["lag_p99_ms"] = _percentile(late, 99) * 1000
            out["lag_ticks"] = len(late)
            times, dicts, encodes = [], [], []
            for _ in range(20):
                t0 = time.thread_time()
                status = app.status()
                t1 = time.thread_time()
                data = status.to_dict()
                t2 = time.thread_time()
                out["status_json_bytes"] = len(json.dumps(data))
                times.append(t1 - t0)
                dicts.append(t2 - t1)
                encodes.append(time.thread_time() - t2)
                await asyncio.sleep(0.05)
            out["status_json_cpu_ms"] = statistics.median(encodes) * 1000
            # CPU per ask of `rosey status` (before its JSON): the loop is held that long.
            out["status_cpu_ms"] = statistics.median(times) * 1000
            out["status_to_dict_cpu_ms"] = statistics.median(dicts) * 1000
            watchdog = app.watchdog
            out["sweep_ms"] = watchdog.last_sweep_seconds * 1000 if watchdog is not None else None
        finally:
            if client is not None:
                if client.returncode is None:
                    client.send_signal(signal.SIGTERM)
                stdout, stderr = await asyncio.wait_for(client.communicate(), 10)
                try:
                    out.update(json.loads(stdout.decode().strip().splitlines()[-1]))
                except (ValueError, IndexError):
                    out["client_error"] = stderr.decode()[-800:]
            await app.stop()
    return out


# ---------------------------------------------------------------------- the client's process


async def client(web_url: str, state_dir: Path) -> dict[str, Any]:
    """Watch the bot until SIGTERM; return what it saw (scrape times, bytes, events)."""
    import aiohttp

    from bot.rosey.core.event_bus import EventBus
    from bot.rosey.core.subjects import Subjects
    from bot.rosey.runtime import read_runtime

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    seen: dict[str, Any] = {"client_scrape_ms": [], "client_scrape_bytes": 0, "client_status_ms": []}
    seen["client_events"] = 0
    runtime = read_runtime(state_dir)
    async with aiohttp.ClientSession() as http:
        if STREAM_PATH is not None:
            token = runtime_token(state_dir)
            headers = {STREAM_TOKEN_HEADER: f"Bearer {token}"} if token else {}

            async def stream() -> None:
                async with http.get(web_url + STREAM_PATH, headers=headers) as response:
                    response.raise_for_status()
                    async for line in response.content:
                        if line.startswith(b"data:"):
                            seen["client_events"] += 1

            task = asyncio.create_task(stream())
            await stop.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await task
        else:
            bus = EventBus(
                runtime.nats_url, name="bench-dashboard", user=runtime.user, password=runtime.password
            )
            await bus.connect()
            next_scrape = time.monotonic()
            while not stop.is_set():
                if time.monotonic() >= next_scrape:
                    next_scrape += SCRAPE_EVERY
                    t0 = time.perf_counter()
                    async with http.get(web_url + "/metrics") as response:
                        body = await response.read()
                    seen["client_scrape_ms"].append((time.perf_counter() - t0) * 1000)
                    seen["client_scrape_bytes"] = len(body)
                if STATUS_EVERY > 0:
                    t0 = time.perf_counter()
                    await bus.request(Subjects.supervisor("status"), {}, "bench-dashboard", timeout=10.0)
                    seen["client_status_ms"].append((time.perf_counter() - t0) * 1000)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STATUS_EVERY or 1.0)
            await bus.disconnect()
    scrapes = seen.pop("client_scrape_ms")
    statuses = seen.pop("client_status_ms")
    seen["client_scrapes"] = len(scrapes)
    seen["client_scrape_ms_median"] = statistics.median(scrapes) if scrapes else None
    seen["client_status_ms_median"] = statistics.median(statuses) if statuses else None
    return seen


def runtime_token(state_dir: Path) -> str | None:
    """The operator token from the runtime file, if this version writes one."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((state_dir / "runtime.json").read_text())
        token = data.get("token") or data.get("web_token")
        return str(token) if token else None
    return None


# ---------------------------------------------------------------------- orchestration


def _export(ref: str, into: Path) -> Path:
    """The tree of git ``ref`` (its ``bot`` package) under ``into``."""
    archive = subprocess.run(["git", "archive", ref, "bot"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _child(count: int, window: float, code: Path | None) -> dict[str, Any]:
    """One round in a fresh process; ``code``: a tree whose ``bot`` to import instead of ours."""
    env = os.environ.copy()
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [env.get("PYTHONPATH")])])
    argv = [sys.executable, SELF, "--child", "--plugins", str(count)]
    argv += ["--window", str(window)]
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, timeout=120 + 3 * window)
    if done.returncode != 0:
        raise RuntimeError(f"dashboard round failed ({done.returncode}): {done.stderr.decode()[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


NUMERIC = (
    "cpu_percent",
    "lag_max_ms",
    "lag_p99_ms",
    "floor_lag_max_ms",
    "floor_lag_p99_ms",
    "ready_s",
    "sweep_ms",
    "status_cpu_ms",
    "status_to_dict_cpu_ms",
    "status_json_cpu_ms",
    "gc_pause_max_cpu_ms",
    "client_scrape_ms_median",
    "client_status_ms_median",
)


def measure_sync(
    *, count: int = PLUGINS, window: float = 30.0, rounds: int = 1, baseline: str | None = None
) -> dict[str, Any]:
    """Rounds of the current code (and of ``baseline``, interleaved); medians per figure."""
    runs: dict[str, list[dict[str, Any]]] = {"now": [], "before": []}
    with tempfile.TemporaryDirectory(prefix="rosey-dash-baseline-") as tmp:
        old = _export(baseline, Path(tmp)) if baseline else None
        for i in range(rounds):
            order: list[tuple[str, Path | None]] = [("now", None)]
            if old is not None:
                order = [*order, ("before", old)] if i % 2 else [("before", old), *order]
            for label, code in order:
                runs[label].append(_child(count, window, code))
    out: dict[str, Any] = {"plugins": count, "window_s": window, "rounds": rounds}
    for label, results in runs.items():
        if not results:
            continue
        suffix = "" if label == "now" else "_before"
        for key in NUMERIC:
            values = [r[key] for r in results if isinstance(r.get(key), (int, float))]
            if values:
                out[key + suffix] = statistics.median(values)
        out["runs" + suffix] = results
    if baseline:
        out["baseline_ref"] = baseline
    out["stream"] = STREAM_PATH or "placeholder: /metrics every 15 s + status every 2 s"
    return out


async def measure(*, quick: bool = False, baseline: str | None = None) -> dict[str, Any]:
    """The ``dashboard`` section of ``python -m bench``."""
    window = 10.0 if quick else 30.0
    return await asyncio.to_thread(measure_sync, window=window, rounds=1, baseline=baseline)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--plugins", type=int, default=PLUGINS)
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window (two windows)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", metavar="GIT_REF", help="also measure this revision's bot, interleaved")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=2, metavar=("WEB_URL", "STATE_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--floor", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor:
        print(json.dumps(asyncio.run(_lag_probe(args.floor, LAG_TICK))))
        return 0
    if args.client:
        print(json.dumps(asyncio.run(client(args.client[0], Path(args.client[1])))), flush=True)
        return 0
    if args.child:
        import logging

        logging.basicConfig(level=logging.ERROR)
        print(json.dumps(asyncio.run(bot_round(args.plugins, args.window)), default=str), flush=True)
        return 0
    result = measure_sync(count=args.plugins, window=args.window, rounds=args.rounds, baseline=args.baseline)
    for key in NUMERIC:
        now, before = result.get(key), result.get(key + "_before")
        if now is None:
            continue
        line = f"{key:28s} {now:10.2f}"
        if before is not None:
            line += f"   before {before:10.2f}"
        print(line)
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("runs")}))
    for label in ("runs", "runs_before"):
        for run in result.get(label, []):
            print(label, "cpu % by thread:", json.dumps(run.get("cpu_by_thread")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
