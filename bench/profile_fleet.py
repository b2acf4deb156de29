"""Where a fleet start's time and memory go (zygote path): CPU per process kind, per-child
timeline, and what each idle child copied. Not part of ``make bench``; see bench/PROFILE.md.

    .venv/bin/python -m bench.profile_fleet [--plugins 50] [--rounds 3] [--smaps]

Per round: start N idle sandboxed plugins through the real Supervisor (zygote launcher), and
read, from ``/proc/PID/schedstat`` (ns resolution):

* CPU of the host (this process's every thread), the zygote, nats-server, and each child from
  its fork to the moment it was found ready (its whole start-up);
* the child's timeline as the host saw it: request sent -> pid back -> launch report (sandbox
  applied) -> READY;
* stop of all N (SIGTERM in parallel) and its CPU.

With ``--smaps`` also the mean ``/proc/PID/smaps_rollup`` of the idle children (Private_Dirty,
Private_Clean, Pss) and the biggest private mappings of one child (``/proc/PID/smaps``).
Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import time
from typing import Any

from bench.fleet import make_supervisor, uss_mb
from bench.harness import BenchEnv, bench_env, cpu_seconds, fleet_name, median
from bot.rosey.plugins.process.launchers import Launcher


def _smaps_rollup(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def _private_by_mapping(pid: int) -> list[tuple[int, str]]:
    """(private kB, mapping name) per mapping, biggest first."""
    sizes: dict[str, int] = collections.Counter()
    name = "?"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else "[anon]"
            elif parts[0] in ("Private_Dirty:", "Private_Clean:"):
                sizes[name] += int(parts[1])
    return sorted(((kb, n) for n, kb in sizes.items()), reverse=True)


async def one_round(env: BenchEnv, count: int, smaps: bool) -> dict[str, Any]:
    assert env.zygote is not None and env.zygote.pid is not None
    zygote_pid = env.zygote.pid
    server_pid = env.server.pid
    assert server_pid is not None
    supervisor = make_supervisor(env, count, Launcher.ZYGOTE)
    host0, zyg0, srv0 = cpu_seconds(os.getpid()), cpu_seconds(zygote_pid), cpu_seconds(server_pid)
    t0 = time.perf_counter()
    await supervisor.start_all()
    wall = time.perf_counter() - t0
    host1, zyg1, srv1 = cpu_seconds(os.getpid()), cpu_seconds(zygote_pid), cpu_seconds(server_pid)
    children = []
    ready_ms = []
    for plugin in supervisor.plugins.values():
        process = plugin.process
        if process is not None and process.pid is not None:
            children.append(cpu_seconds(process.pid))
            if process.ready_seconds is not None:
                ready_ms.append(process.ready_seconds * 1000)
    out: dict[str, Any] = {
        "wall_s": wall,
        "host_cpu_ms": (host1 - host0) * 1000,
        "zygote_cpu_ms": (zyg1 - zyg0) * 1000,
        "server_cpu_ms": (srv1 - srv0) * 1000,
        "child_cpu_ms_median": median(children) * 1000,
        "children_cpu_ms_total": sum(children) * 1000,
        "ready_ms_median": median(ready_ms),
        "ready_ms_max": max(ready_ms),
    }
    pids = [p.process.pid for p in supervisor.plugins.values() if p.process is not None and p.process.pid]
    uss = [u for pid in pids if (u := uss_mb(pid)) is not None]
    out["uss_mb_median"] = median(uss)
    if smaps:
        rollups = [_smaps_rollup(pid) for pid in pids]
        for key in ("Private_Dirty", "Private_Clean", "Pss", "Rss", "Anonymous"):
            out[f"{key}_kb_mean"] = sum(r.get(key, 0) for r in rollups) / len(rollups)
        out["biggest_private"] = _private_by_mapping(pids[0])[:12]
    host0 = cpu_seconds(os.getpid())
    t0 = time.perf_counter()
    await supervisor.stop_all()
    out["stop_s"] = time.perf_counter() - t0
    out["stop_host_cpu_ms"] = (cpu_seconds(os.getpid()) - host0) * 1000
    return out


async def main_async(args: argparse.Namespace) -> None:
    names = [fleet_name(i) for i in range(args.plugins)]
    async with bench_env(names) as env:
        rounds = [await one_round(env, args.plugins, args.smaps) for _ in range(args.rounds)]
    keys = [k for k in rounds[0] if k != "biggest_private"]
    for key in keys:
        values = [r[key] for r in rounds]
        print(f"{key:28s} median {median(values):9.2f}   " + " ".join(f"{v:.2f}" for v in values))
    if args.smaps:
        print("biggest private mappings of one child (kB):")
        for kb, name in rounds[-1]["biggest_private"]:
            print(f"  {kb:7d}  {name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_fleet", description=__doc__)
    parser.add_argument("--plugins", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smaps", action="store_true")
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
