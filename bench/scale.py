"""The scale curve: 10, 100, 500 and 1,000 idle plugins under the real RoseyApp.

Each size runs in a fresh child process: the real :class:`~bot.rosey.app.RoseyApp` from a
``rosey.toml`` (zygote launcher, sandbox on, watchdog on, web server on 127.0.0.1, embedded
NATS with one user per plugin), as ``rosey run`` starts it, then ``freeze_startup_objects`` as
``rosey run`` does. For each size:

  * ``ready_s``: ``app.start()`` from nothing to every plugin ready (NATS, services, plugins);
  * memory: the plugins' USS and PSS summed (and per plugin), the bot's, nats-server's and the
    zygote's own USS: what N plugins cost the machine;
  * at rest (after the watchdog's first rounds): the bot's CPU over a window (every thread,
    ``/proc/self/task/*/schedstat``, % of one core), then its event-loop lag (a 5 ms ticker, max
    and p99) beside an idle loop's in a process of its own (this machine's floor, same window);
  * command p50: ``!echo``-like round trips to one plugin through the router, one at a time;
  * ``stop_s``: every plugin stopped (SIGTERM, ``on_stop``, exit), then the whole app.

    python -m bench.scale                     # 10, 100, 500, 1000
    python -m bench.scale --sizes 10,100      # a subset
    python -m bench --scale                   # the same from ``make bench ARGS="--scale"``

No system limit is raised by hand: Rosey raises its own file-descriptor soft limit and sizes
nats-server for the plugins it runs (see ``bot/rosey/system_limits.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dashboard import _lag_probe, _percentile, _toml
from bench.dashboard import _thread_cpu as _cpu_per_thread

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZES = (10, 100, 500, 1000)
LAG_TICK = 0.005
_MB = 1024 * 1024


def _thread_cpu() -> float:
    """CPU seconds of all this process's threads together."""
    return sum(_cpu_per_thread().values())


def _memory(pids: list[int]) -> tuple[float, float, int]:
    """USS and PSS (MB) summed over ``pids``, and how many were read."""
    import psutil

    uss = pss = 0.0
    read = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            info = psutil.Process(pid).memory_full_info()
            uss += info.uss
            pss += info.pss
            read += 1
    return uss / _MB, pss / _MB, read


async def bot_round(count: int, window: float, commands: int) -> dict[str, Any]:
    from bot.rosey.app import RoseyApp
    from bot.rosey.config import LAUNCHER_ENV, STATE_DIR_ENV, load_config
    from bot.rosey.supervision.heap import freeze_startup_objects

    for variable in (STATE_DIR_ENV, LAUNCHER_ENV):
        os.environ.pop(variable, None)
    out: dict[str, Any] = {"plugins": count}
    with tempfile.TemporaryDirectory(prefix="rosey-scale-bench-") as tmp:
        work = Path(tmp)
        (work / "rosey.toml").write_text(_toml(work / ".rosey", count))
        app = RoseyApp(load_config(work / "rosey.toml"))
        stopped = False
        try:
            t0 = time.perf_counter()
            results = await app.start()
            out["ready_s"] = time.perf_counter() - t0
            failed = {n: str(e) for n, e in results.items() if e is not None}
            out["failed"] = len(failed)
            if failed:
                name, error = next(iter(failed.items()))
                raise RuntimeError(f"{len(failed)} of {count} plugins failed to start, e.g. {name}: {error}")
            freeze_startup_objects()
            status = app.status()
            out["launcher"] = status.launcher.kind
            out["sandbox"] = status.sandbox_mode
            assert app.supervisor is not None and app.router is not None
            pids = [
                p.process.pid
                for p in app.supervisor.plugins.values()
                if p.process is not None and p.process.pid is not None
            ]
            uss, pss, read = _memory(pids)
            out["plugins_uss_mb"] = uss
            out["plugins_pss_mb"] = pss
            out["uss_mb_per_plugin"] = uss / max(1, read)
            out["pss_mb_per_plugin"] = pss / max(1, read)
            out["bot_uss_mb"] = _memory([os.getpid()])[0]
            out["bot_fds"] = len(os.listdir("/proc/self/fd"))
            out["bot_threads"] = len(os.listdir("/proc/self/task"))
            limits = getattr(app, "system_limits", None)
            if limits is not None:
                out["open_files_limit"] = limits.open_files
                out["open_files_limit_before"] = limits.open_files_before
                out["limit_problems"] = list(limits.problems)
            if app.server is not None and app.server.pid is not None:
                out["nats_uss_mb"] = _memory([app.server.pid])[0]
                with contextlib.suppress(OSError):
                    out["nats_fds"] = len(os.listdir(f"/proc/{app.server.pid}/fd"))
            if app.zygote is not None and app.zygote.pid is not None:
                out["zygote_uss_mb"] = _memory([app.zygote.pid])[0]
            await asyncio.sleep(5.0)  # the watchdog's first sweeps, pings and stats rounds
            cpu0, wall0 = _thread_cpu(), time.perf_counter()
            await asyncio.sleep(window)
            out["cpu_percent"] = 100 * (_thread_cpu() - cpu0) / (time.perf_counter() - wall0)
            floor = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.scale",
                "--floor",
                str(window),
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
            )
            late = await _lag_probe(window, LAG_TICK)
            floor_late = json.loads((await floor.communicate())[0].decode())
            out["lag_max_ms"] = max(late) * 1000
            out["lag_p99_ms"] = _percentile(late, 99) * 1000
            out["floor_lag_max_ms"] = max(floor_late) * 1000
            out["floor_lag_p99_ms"] = _percentile(floor_late, 99) * 1000
            target = next(iter(app.supervisor.plugins))
            times = []
            for i in range(commands):
                t0 = time.perf_counter()
                outcome = await app.router.execute(target, ["hi", str(i)], timeout=10)
                times.append(time.perf_counter() - t0)
                if not outcome.ok:
                    raise RuntimeError(f"command to {target} failed: {outcome.message}")
            out["command_p50_us"] = statistics.median(times[5:] or times) * 1e6
            out["status_json_bytes"] = len(json.dumps(app.status().to_dict()))
            if app.watchdog is not None:
                out["excused_pings"] = app.watchdog.excused_pings
            t0 = time.perf_counter()
            await app.supervisor.stop_all()
            out["stop_plugins_s"] = time.perf_counter() - t0
            await app.stop()
            stopped = True
            out["stop_s"] = time.perf_counter() - t0
        finally:
            if not stopped:
                await app.stop()
    return out


def _child(count: int, window: float, commands: int) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench.scale",
        "--child",
        str(count),
        "--window",
        str(window),
        "--commands",
        str(commands),
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=600 + 3 * window)
    if done.returncode != 0:
        raise RuntimeError(
            f"{count} plugins: round failed ({done.returncode}): {done.stderr.decode()[-1500:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def measure_sync(sizes: tuple[int, ...] = SIZES, window: float = 10.0, commands: int = 200) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": list(sizes), "window_s": window}
    for count in sizes:
        result = _child(count, window, commands)
        for key, value in result.items():
            out[f"n{count}.{key}"] = value
    return out


async def measure(*, quick: bool = False, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """The ``scale`` section of ``python -m bench --scale``."""
    return await asyncio.to_thread(measure_sync, sizes, 5.0 if quick else 10.0, 50 if quick else 200)


COLUMNS = (
    ("ready_s", "all ready s", "{:.2f}"),
    ("uss_mb_per_plugin", "USS/plugin MB", "{:.2f}"),
    ("pss_mb_per_plugin", "PSS/plugin MB", "{:.2f}"),
    ("plugins_pss_mb", "plugins PSS MB", "{:.0f}"),
    ("bot_uss_mb", "bot USS MB", "{:.0f}"),
    ("nats_uss_mb", "nats USS MB", "{:.0f}"),
    ("cpu_percent", "bot CPU %", "{:.2f}"),
    ("lag_max_ms", "lag max ms", "{:.1f}"),
    ("floor_lag_max_ms", "floor lag ms", "{:.1f}"),
    ("command_p50_us", "cmd p50 µs", "{:.0f}"),
    ("stop_s", "stop all s", "{:.2f}"),
)


def table(result: dict[str, Any]) -> str:
    """The curve as a markdown table (one row per size)."""
    head = "| plugins | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    rows = [head, "|" + "---:|" * (len(COLUMNS) + 1)]
    for count in result["sizes"]:
        cells = []
        for key, _, fmt in COLUMNS:
            value = result.get(f"n{count}.{key}")
            cells.append(fmt.format(value) if isinstance(value, (int, float)) else "-")
        rows.append(f"| {count:,} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated plugin counts")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per window at rest")
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--floor", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor:
        print(json.dumps(asyncio.run(_lag_probe(args.floor, LAG_TICK))))
        return 0
    if args.child:
        import logging

        logging.basicConfig(level=logging.ERROR)
        print(json.dumps(asyncio.run(bot_round(args.child, args.window, args.commands)), default=str))
        return 0
    sizes = tuple(int(s) for s in args.sizes.split(","))
    result = measure_sync(sizes, args.window, args.commands)
    print(table(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
