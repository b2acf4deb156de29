"""Command round trip and throughput: CoreRouter.execute -> EventBus -> sandboxed plugin process
-> result back, against raw nats-py request/reply to a raw responder process.

Both requesters live in this process on the same event loop and the same server; blocks of
Rosey and raw requests alternate (and alternate which goes first), so noise hits both alike.

Run alone (e.g. under uvloop on both sides, which is how ``python -m bench`` uses it):

    python -m bench.roundtrip [--uvloop] [--quick]      # prints one JSON object
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.harness import (
    IDLE_PLUGIN,
    RAW_NAME,
    RT_PLUGIN,
    UVLOOP_PLUGIN,
    BenchEnv,
    bench_env,
    median,
    percentile,
    raw_subject,
)
from bot.rosey.core.events import Event

Op = Callable[[], Awaitable[None]]


async def make_ops(env: BenchEnv) -> tuple[Op, Op, Callable[[], Awaitable[None]]]:
    """(rosey command, raw request, cleanup). The raw payload is as big as a Rosey request."""
    assert env.router is not None
    router = env.router
    raw = await env.raw_client()
    subject = raw_subject()
    payload = Event(
        subject=subject, data={"args": ["hi"], "user": "console", "channel": "console"}, source="rosey-router"
    ).to_bytes()

    async def rosey() -> None:
        outcome = await router.execute(RT_PLUGIN, ["hi"])
        if not outcome.ok:
            raise RuntimeError(f"command failed: {outcome.kind} {outcome.message}")

    async def raw_request() -> None:
        await raw.request(subject, payload, timeout=10)

    async def close() -> None:
        await raw.close()

    return rosey, raw_request, close


async def sequential(op: Op, count: int) -> list[float]:
    """``count`` back-to-back calls; seconds each."""
    out = []
    clock = time.perf_counter
    for _ in range(count):
        t0 = clock()
        await op()
        out.append(clock() - t0)
    return out


async def rate(op: Op, in_flight: int, window: float) -> float:
    """Completions per second with ``in_flight`` callers looping for ``window`` seconds."""
    clock = time.perf_counter
    done = 0
    stop_at = clock() + window

    async def worker() -> None:
        nonlocal done
        while clock() < stop_at:
            await op()
            if clock() <= stop_at:
                done += 1

    t0 = clock()
    stop_at = t0 + window
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done / window


async def measure(env: BenchEnv, *, quick: bool, uvloop: bool = False) -> dict[str, Any]:
    """Start the plugin (sandboxed) and the raw responder, then interleave A/B blocks."""
    plugin = env.plugin(RT_PLUGIN, plugin_file=UVLOOP_PLUGIN if uvloop else IDLE_PLUGIN)
    await plugin.start()
    await env.start_raw_responder(uvloop=uvloop)
    rosey, raw, close = await make_ops(env)
    rounds, block = (6, 100) if quick else (20, 150)
    levels = (1, 10, 100)
    windows, rate_rounds = (0.3, 3) if quick else (0.5, 7)
    try:
        for op in (rosey, raw):  # warm-up: imports, caches, first-connection costs
            await sequential(op, 200)
            await rate(op, 100, 0.2)
        seq: dict[str, list[float]] = {"rosey": [], "raw": []}
        for i in range(rounds):
            order = (("rosey", rosey), ("raw", raw)) if i % 2 == 0 else (("raw", raw), ("rosey", rosey))
            for name, op in order:
                seq[name].extend(await sequential(op, block))
        rates: dict[str, dict[int, list[float]]] = {
            "rosey": {n: [] for n in levels},
            "raw": {n: [] for n in levels},
        }
        for i in range(rate_rounds):
            for n in levels:
                order = (
                    (("rosey", rosey), ("raw", raw)) if (i + n) % 2 == 0 else (("raw", raw), ("rosey", rosey))
                )
                for name, op in order:
                    rates[name][n].append(await rate(op, n, windows))
    finally:
        await close()
        await plugin.stop()
    result: dict[str, Any] = {"samples": len(seq["rosey"])}
    for side in ("rosey", "raw"):
        result[f"rt_p50_us_{side}"] = median(seq[side]) * 1e6
        result[f"rt_p99_us_{side}"] = percentile(seq[side], 99) * 1e6
        for n in levels:
            result[f"rate_{n}_{side}"] = median(rates[side][n])
    return result


async def _main(uvloop: bool, quick: bool) -> dict[str, Any]:
    async with bench_env(names=(RT_PLUGIN, RAW_NAME)) as env:
        return await measure(env, uvloop=uvloop, quick=quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--uvloop", action="store_true", help="uvloop here, in the plugin and in the raw responder"
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from bench.harness import quiet_logging

    quiet_logging(None)
    if args.uvloop:
        import uvloop

        uvloop.install()
    result = asyncio.run(_main(args.uvloop, args.quick))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
