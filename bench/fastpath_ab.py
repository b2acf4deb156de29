"""A/B of Rosey's NATS fast path (issue 17) beside stock nats-py and the raw floor, in one run.

Three pairs on one server, blocks interleaved (rotating which goes first), so that the machine's
noise hits all three alike:

  fast   CoreRouter.execute -> sandboxed plugin, both sides on FastClient (``ROSEY_NATS_FASTPATH=1``)
  stock  the same code on the stock nats-py client (the default)
  raw    nats-py request/reply to bench/raw_responder.py

For each: p50 of sequential round trips, commands/s at 10 and 100 in flight, and CPU µs per
command in the requester (this process), the responder and nats-server (schedstat, ns).

    .venv/bin/python -m bench.fastpath_ab [--rounds 12] [--block 200] [--window 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import time
from collections.abc import Awaitable, Callable

from bench.harness import RAW_NAME, RT_PLUGIN, bench_env, cpu_seconds, median, quiet_logging
from bench.roundtrip import make_ops, rate, sequential
from bot.rosey.core.event_bus import FASTPATH_ENV, EventBus
from bot.rosey.services.router import CoreRouter, RouterConfig

STOCK_PLUGIN = "p0"  # an identity bench_env creates; the stock-client plugin runs under it

Op = Callable[[], Awaitable[None]]


async def _run(rounds: int, block: int, window: float) -> None:
    async with bench_env(names=(RT_PLUGIN, RAW_NAME, STOCK_PLUGIN)) as env:
        assert env.router is not None
        fast_plugin = env.plugin(RT_PLUGIN, extra_env={FASTPATH_ENV: "1"})
        stock_plugin = env.plugin(STOCK_PLUGIN, extra_env={FASTPATH_ENV: "0"})
        await fast_plugin.start()
        await stock_plugin.start()
        responder = await env.start_raw_responder()
        os.environ[FASTPATH_ENV] = "1"
        try:
            fast_bus = EventBus(env.url, name="bench-fast", user=env.core.user, password=env.core.password)
            await fast_bus.connect()
        finally:
            del os.environ[FASTPATH_ENV]
        stock_bus = EventBus(env.url, name="bench-stock", user=env.core.user, password=env.core.password)
        await stock_bus.connect()
        stock_router = CoreRouter(stock_bus, RouterConfig(command_timeout=10.0))
        fast_router = CoreRouter(fast_bus, RouterConfig(command_timeout=10.0))
        _fast_op, raw_op, close = await make_ops(env)

        async def fast() -> None:
            outcome = await fast_router.execute(RT_PLUGIN, ["hi"])
            if not outcome.ok:
                raise RuntimeError(f"fast: {outcome.kind} {outcome.message}")

        async def stock() -> None:
            outcome = await stock_router.execute(STOCK_PLUGIN, ["hi"])
            if not outcome.ok:
                raise RuntimeError(f"stock: {outcome.kind} {outcome.message}")

        assert fast_plugin.pid is not None and stock_plugin.pid is not None
        sides: list[tuple[str, Op, int]] = [
            ("fast", fast, fast_plugin.pid),
            ("stock", stock, stock_plugin.pid),
            ("raw", raw_op, responder.pid),
        ]
        me, server = os.getpid(), env.server.pid
        assert server is not None
        seq: dict[str, list[float]] = collections.defaultdict(list)
        rates: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        cpu: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        try:
            for _, op, _ in sides:
                await sequential(op, 300)
                await rate(op, 100, 0.2)
            for i in range(rounds):
                order = sides[i % 3 :] + sides[: i % 3]
                for name, op, pid in order:
                    before = (cpu_seconds(me), cpu_seconds(pid), cpu_seconds(server))
                    seq[name].extend(await sequential(op, block))
                    after = (cpu_seconds(me), cpu_seconds(pid), cpu_seconds(server))
                    for what, a, b in zip(("requester", "responder", "server"), before, after, strict=True):
                        cpu[(name, f"1:{what}")].append((b - a) / block * 1e6)
                for n in (10, 100):
                    for name, op, pid in order:
                        t0 = time.perf_counter()
                        before = (cpu_seconds(me), cpu_seconds(pid), cpu_seconds(server))
                        per_s = await rate(op, n, window)
                        after = (cpu_seconds(me), cpu_seconds(pid), cpu_seconds(server))
                        done = per_s * window or 1
                        _ = time.perf_counter() - t0
                        rates[(name, n)].append(per_s)
                        for what, a, b in zip(
                            ("requester", "responder", "server"), before, after, strict=True
                        ):
                            cpu[(name, f"{n}:{what}")].append((b - a) / done * 1e6)
        finally:
            await close()
            await stock_bus.disconnect()
            await fast_bus.disconnect()
            await fast_plugin.stop()
            await stock_plugin.stop()
    raw_p50 = median(seq["raw"])
    print(f"rounds {rounds}, block {block}, window {window}s; load {os.getloadavg()[0]:.1f}")
    print(f"{'':6s} {'p50 µs':>8s} {'x raw':>6s} {'/s @10':>8s} {'x raw':>6s} {'/s @100':>8s} {'x raw':>6s}")
    for name, _, _ in sides:
        p50 = median(seq[name])
        r10, r100 = median(rates[(name, 10)]), median(rates[(name, 100)])
        raw10, raw100 = median(rates[("raw", 10)]), median(rates[("raw", 100)])
        print(
            f"{name:6s} {p50 * 1e6:8.0f} {p50 / raw_p50:6.2f} {r10:8.0f} {r10 / raw10:6.2f} "
            f"{r100:8.0f} {r100 / raw100:6.2f}"
        )
    print("\nCPU µs per command (median of blocks): requester / responder / nats-server = total")
    for level in ("1", "10", "100"):
        for name, _, _ in sides:
            parts = [median(cpu[(name, f"{level}:{w}")]) for w in ("requester", "responder", "server")]
            print(
                f"  {level:>3s} in flight {name:6s} "
                f"{parts[0]:7.1f} / {parts[1]:7.1f} / {parts[2]:7.1f} = {sum(parts):7.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--window", type=float, default=0.5)
    args = parser.parse_args()
    quiet_logging(None)
    asyncio.run(_run(args.rounds, args.block, args.window))


if __name__ == "__main__":
    main()
