"""Where a command's extra time goes, compared with raw nats-py request/reply.

Not part of ``make bench``; a tool for the report. Three views of the same traffic (the idle
plugin with the sandbox on, the raw responder, both requesters in this process):

  cpu       CPU time per command in each process (requester side = this process, plugin or raw
            responder, nats-server), Rosey vs raw, A/B interleaved, at 1 and 100 in flight
  pyspy     py-spy flame data (collapsed stacks) of this process and of the plugin while they
            serve commands; prints the top frames by own and inclusive samples
  cprofile  cProfile of the requester side (this process) for N sequential commands

    .venv/bin/python -m bench.profile_roundtrip cpu [--commands 20000]
    .venv/bin/python -m bench.profile_roundtrip pyspy [--seconds 8] [--in-flight 100]
    .venv/bin/python -m bench.profile_roundtrip cprofile [--commands 5000]

py-spy and pyinstrument are not dependencies: ``pip install py-spy`` into .venv to use ``pyspy``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.harness import RAW_NAME, RT_PLUGIN, BenchEnv, bench_env, cpu_seconds, median, quiet_logging
from bench.roundtrip import make_ops, rate, sequential


def _cpu(proc: psutil.Process) -> float:
    return cpu_seconds(proc.pid)


async def cpu_per_command(env: BenchEnv, commands: int, rounds: int) -> None:
    plugin = env.plugin(RT_PLUGIN)
    await plugin.start()
    responder = await env.start_raw_responder()
    rosey, raw, close = await make_ops(env)
    me = psutil.Process()
    server = psutil.Process(env.server.pid)
    assert plugin.pid is not None
    plugin_proc, raw_proc = psutil.Process(plugin.pid), psutil.Process(responder.pid)
    try:
        for op in (rosey, raw):
            await sequential(op, 300)
        for in_flight in (1, 100):
            per: dict[str, dict[str, list[float]]] = {
                "rosey": collections.defaultdict(list),
                "raw": collections.defaultdict(list),
            }
            for i in range(rounds):
                order = [("rosey", rosey, plugin_proc), ("raw", raw, raw_proc)]
                if i % 2:
                    order.reverse()
                for side, op, responder_proc in order:
                    before = (_cpu(me), _cpu(responder_proc), _cpu(server), time.perf_counter())
                    n = commands // rounds
                    if in_flight == 1:
                        await sequential(op, n)
                    else:
                        await asyncio.gather(*(_loop(op, n // in_flight) for _ in range(in_flight)))
                    after = (_cpu(me), _cpu(responder_proc), _cpu(server), time.perf_counter())
                    for name, a, b in zip(
                        ("requester", "responder", "nats-server", "wall"), before, after, strict=True
                    ):
                        per[side][name].append((b - a) / n * 1e6)
            block = commands // rounds
            print(
                f"\n{in_flight} in flight: µs per command (median of {rounds} interleaved blocks of {block})"
            )
            heads = ("requester", "responder", "nats-server", "CPU total", "wall")
            print(
                f"  {'':12s} {heads[0]:>10s} {heads[1]:>10s} {heads[2]:>11s} {heads[3]:>10s} {heads[4]:>8s}"
            )
            for side in ("rosey", "raw"):
                cols = {k: median(v) for k, v in per[side].items()}
                total = cols["requester"] + cols["responder"] + cols["nats-server"]
                req, resp, srv = cols["requester"], cols["responder"], cols["nats-server"]
                print(f"  {side:12s} {req:10.1f} {resp:10.1f} {srv:11.1f} {total:10.1f} {cols['wall']:8.1f}")
    finally:
        await close()
        await plugin.stop()


async def _loop(op: Any, n: int) -> None:
    for _ in range(n):
        await op()


def _summarize_collapsed(path: Path, top: int, title: str) -> None:
    """Own and inclusive sample counts per frame from py-spy's collapsed format."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    print(f"\n== {title}: {total} samples ==")
    print("  own time (top frames):")
    for frame, count in own.most_common(top):
        print(f"    {100 * count / total:5.1f}%  {frame}")
    print("  inclusive time (Rosey / nats-py / asyncio / json frames):")
    keep = ("rosey", "nats", "json", "uuid", "asyncio", "logging", "dataclasses", "bench")
    shown = 0
    for frame, count in inclusive.most_common():
        if any(k in frame for k in keep):
            print(f"    {100 * count / total:5.1f}%  {frame}")
            shown += 1
            if shown >= top * 2:
                break


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"; drop line numbers so calls merge
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"


async def pyspy(env: BenchEnv, seconds: float, in_flight: int, top: int, raw_side: bool) -> None:
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    plugin = env.plugin(RT_PLUGIN)
    await plugin.start()
    responder = await env.start_raw_responder()
    rosey, raw, close = await make_ops(env)
    op = raw if raw_side else rosey
    out = Path(tempfile.mkdtemp(prefix="rosey-pyspy-"))
    target_pid = responder.pid if raw_side else plugin.pid
    try:
        await sequential(op, 300)
        recorders = [
            subprocess.Popen(  # noqa: ASYNC220 - a few ms, once, in a profiling tool
                [
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(int(seconds)),
                    "--rate",
                    "500",
                    "--format",
                    "raw",
                    "--output",
                    str(out / f"{label}.txt"),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for label, pid in (("requester", os.getpid()), ("responder", target_pid))
        ]
        await asyncio.sleep(0.5)  # let py-spy attach
        if in_flight == 1:
            stop_at = time.perf_counter() + seconds
            while time.perf_counter() < stop_at:
                await sequential(op, 100)
        else:
            await rate(op, in_flight, seconds)
        for rec in recorders:
            await asyncio.to_thread(rec.wait)
            if rec.returncode != 0 and rec.stderr is not None:
                print(rec.stderr.read().decode()[-1000:], file=sys.stderr)
    finally:
        await close()
        await plugin.stop()
    side = "raw" if raw_side else "rosey"
    _summarize_collapsed(
        out / "requester.txt", top, f"requester side (this process), {side}, {in_flight} in flight"
    )
    _summarize_collapsed(
        out / "responder.txt",
        top,
        f"responder side ({'raw responder' if raw_side else 'plugin'}), {in_flight} in flight",
    )
    print(f"\ncollapsed stacks kept in {out}")


async def cprofile_requester(env: BenchEnv, commands: int, top: int) -> None:
    plugin = env.plugin(RT_PLUGIN)
    await plugin.start()
    await env.start_raw_responder()
    rosey, _raw, close = await make_ops(env)
    try:
        await sequential(rosey, 300)
        profiler = cProfile.Profile()
        profiler.enable()
        await sequential(rosey, commands)
        profiler.disable()
    finally:
        await close()
        await plugin.stop()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


async def _main(args: argparse.Namespace) -> None:
    async with bench_env(names=(RT_PLUGIN, RAW_NAME)) as env:
        if args.mode == "cpu":
            await cpu_per_command(env, args.commands, args.rounds)
        elif args.mode == "pyspy":
            await pyspy(env, args.seconds, args.in_flight, args.top, args.raw)
        else:
            await cprofile_requester(env, args.commands, args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("cpu", "pyspy", "cprofile"))
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", action="store_true", help="pyspy: profile the raw pair instead of Rosey")
    args = parser.parse_args()
    quiet_logging(None)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
