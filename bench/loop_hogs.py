"""What holds the bot's event loop longest at rest: every loop callback timed, the longest named.

The real RoseyApp (as in ``bench/scale.py``) with N idle plugins and, optionally, a dashboard
client; every ``asyncio`` callback (``Handle._run``: a task step, a timer, a reader) is timed
on the thread's CPU clock and on the wall clock for a window at rest, and the longest ones are
printed with what they ran (the task's coroutine, or the callback). Also the CPU cost of each
periodic piece called directly: ``app.status()``, its ``to_dict``, the JSON of ``rosey status``,
the dashboard's tick and payload, ``/metrics``.

    python -m bench.loop_hogs --plugins 100 --window 20
    python -m bench.loop_hogs --plugins 1000 --window 20 --client
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.scale import _toml

DASHBOARD = str(Path(__file__).resolve().parent / "dashboard.py")


def _describe(handle: asyncio.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        code = getattr(coro, "cr_code", None)
        frame = getattr(coro, "cr_frame", None)
        where = f"{code.co_qualname}" if code is not None else repr(coro)
        if frame is not None:
            where += f" @{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"
        return f"task {owner.get_name()}: {where}"
    name = getattr(callback, "__qualname__", None) or repr(callback)
    return f"callback {name}"


class Hogs:
    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = defaultdict(list)
        self.cpu: dict[str, list[float]] = defaultdict(list)
        self.on = False
        self._original: Any = None

    def install(self) -> None:
        original = self._original = asyncio.events.Handle._run
        hogs = self

        def _run(handle: asyncio.Handle) -> None:
            if not hogs.on:
                original(handle)
                return
            what = _describe(handle)  # before: a task step's frame is where it resumes
            what = re.sub(r"Task-\d+", "Task-N", what)
            w0, c0 = time.perf_counter(), time.thread_time()
            original(handle)
            hogs.cpu[what].append(time.thread_time() - c0)
            hogs.wall[what].append(time.perf_counter() - w0)

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]

    def total_cpu_ms(self) -> float:
        return sum(sum(v) for v in self.cpu.values()) * 1000

    def report(self, top: int = 20, key: str = "cpu_max_ms") -> list[dict[str, Any]]:
        rows = [
            {
                "what": what,
                "calls": len(cpu),
                "cpu_max_ms": max(cpu) * 1000,
                "cpu_total_ms": sum(cpu) * 1000,
                "wall_max_ms": max(self.wall[what]) * 1000,
            }
            for what, cpu in self.cpu.items()
        ]
        rows.sort(key=lambda r: -r[key])
        return rows[:top]


def _cpu_ms(work: Any, repeats: int = 10) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        work()
        times.append(time.thread_time() - t0)
    return statistics.median(times) * 1000


async def main(count: int, window: float, client: bool) -> dict[str, Any]:
    from bot.rosey.app import RoseyApp
    from bot.rosey.config import load_config
    from bot.rosey.supervision.heap import freeze_startup_objects

    out: dict[str, Any] = {"plugins": count}
    hogs = Hogs()
    hogs.install()
    with tempfile.TemporaryDirectory(prefix="rosey-hogs-") as tmp:
        work = Path(tmp)
        (work / "rosey.toml").write_text(_toml(work / ".rosey", count))
        app = RoseyApp(load_config(work / "rosey.toml"))
        watcher: asyncio.subprocess.Process | None = None
        try:
            results = await app.start()
            bad = [n for n, e in results.items() if e is not None]
            if bad:
                raise RuntimeError(f"{len(bad)} plugins failed to start")
            freeze_startup_objects()
            if client and app.web_url is not None:
                dash = DASHBOARD
                watcher = await asyncio.create_subprocess_exec(
                    sys.executable, dash, "--client", app.web_url, str(work / ".rosey"),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            await asyncio.sleep(6.0)
            hogs.on = True
            await asyncio.sleep(window)
            hogs.on = False
            out["hogs"] = hogs.report()
            out["hogs_total"] = hogs.report(12, "cpu_total_ms")
            out["loop_cpu_percent"] = hogs.total_cpu_ms() / 10 / window
            status = app.status()
            out["status_cpu_ms"] = _cpu_ms(app.status)
            out["status_to_dict_cpu_ms"] = _cpu_ms(status.to_dict)
            data = status.to_dict()
            out["status_json_cpu_ms"] = _cpu_ms(lambda: json.dumps(data))
            out["status_json_bytes"] = len(json.dumps(data))
            dashboard = app.dashboard
            if dashboard is not None:
                out["dashboard_tick_ms"] = dashboard.last_tick_ms
                out["dashboard_payload_cpu_ms"] = _cpu_ms(dashboard.payload)
        finally:
            if watcher is not None and watcher.returncode is None:
                watcher.terminate()
                with contextlib.suppress(Exception):
                    await watcher.wait()
            await app.stop()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugins", type=int, default=100)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--client", action="store_true", help="a dashboard client on the event stream")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    os.environ.pop("ROSEY_STATE_DIR", None)
    result = asyncio.run(main(args.plugins, args.window, args.client))
    for row in [*result.pop("hogs"), {}, *result.pop("hogs_total")]:
        if not row:
            print("-- by total CPU")
            continue
        print(
            f"{row['cpu_max_ms']:8.2f} cpu max  {row['wall_max_ms']:8.2f} wall max  "
            f"{row['cpu_total_ms']:9.1f} cpu total  {row['calls']:6d}x  {row['what']}"
        )
    print(json.dumps(result))
