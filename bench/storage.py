"""Plugin storage: ``self.storage`` get/put from a sandboxed plugin vs raw JetStream KV calls.

The real RoseyApp runs one plugin (``bench/plugins/storage_bench_plugin.py``) that times its own
storage calls (plugin -> NATS -> storage service -> JetStream -> back). The raw baseline is
nats-py's KeyValue on the same server, from this process, on a bucket configured like a
plugin's (history 1, file storage, the same limits): one process, one connection, one hop to
JetStream. Blocks alternate (Rosey, raw, raw, Rosey, ...) so noise hits both alike.

    python -m bench.storage [--quick]      # prints a table and one JSON line
Also the ``storage`` section of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from bench.harness import BENCH_DIR, median
from bot.rosey.app import RoseyApp
from bot.rosey.config import STATE_DIR_ENV, load_config
from bot.rosey.core.event_bus import EventBus
from bot.rosey.runtime import read_runtime
from bot.rosey.services.router import CoreRouter
from bot.rosey.storage_config import StorageLimits

PLUGIN = BENCH_DIR / "plugins" / "storage_bench_plugin.py"
NAME = "storebench"
RAW_BUCKET = "rosey_rawbench"
VALUE = json.dumps({"user": "ann", "score": 12, "answers": ["a", "b", "c"], "pad": "x" * 64}).encode()


def _toml() -> str:
    return f"""
[rosey]
state_dir = ".rosey"
entry_points = false
plugin_dirs = []

[nats]
monitor = false

[plugins.{NAME}]
path = {json.dumps(str(PLUGIN))}
command_timeout = 120
max_cpu_percent = 200
"""


async def measure(*, quick: bool = False) -> dict[str, Any]:
    import os

    sequential = 500 if quick else 2000
    total = 5000 if quick else 20000
    rounds = 2 if quick else 3
    saved = os.environ.pop(STATE_DIR_ENV, None)
    try:
        with tempfile.TemporaryDirectory(prefix="rosey-storage-bench-") as tmp:
            workdir = Path(tmp)
            (workdir / "rosey.toml").write_text(_toml())
            app = RoseyApp(load_config(workdir / "rosey.toml"))
            try:
                results = await app.start()
                assert all(r is None for r in results.values()), results
                return await _run(app, sequential, total, rounds)
            finally:
                await app.stop()
    finally:
        if saved is not None:
            os.environ[STATE_DIR_ENV] = saved


async def _run(app: RoseyApp, sequential: int, total: int, rounds: int) -> dict[str, Any]:
    runtime = read_runtime(app.config.state_dir)
    core = EventBus(runtime.nats_url, name="bench", user=runtime.user, password=runtime.password)
    await core.connect()
    router = CoreRouter(core, source="bench")
    await router.start(chat=False)
    raw_nc = core.client
    js = raw_nc.jetstream()
    limits = StorageLimits()
    await js.add_stream(
        StreamConfig(
            name=f"KV_{RAW_BUCKET}",
            subjects=[f"$KV.{RAW_BUCKET}.>"],
            max_msgs_per_subject=1,
            max_msgs=limits.max_keys,
            max_bytes=limits.max_bytes,
            max_msg_size=limits.max_value_bytes + 512,
            discard=DiscardPolicy.NEW,
            storage=StorageType.FILE,
            allow_rollup_hdrs=True,
            deny_delete=True,
            allow_direct=True,
            allow_msg_ttl=True,
        )
    )
    kv = await js.key_value(RAW_BUCKET)
    await kv.put("bench.key", VALUE)

    async def plugin(*args: object) -> dict[str, Any]:
        outcome = await router.execute(NAME, [str(a) for a in args], timeout=120)
        if not outcome.ok:
            raise RuntimeError(f"storage bench plugin failed: {outcome.message}")
        return dict(outcome.data)

    async def raw_op(op: str, i: int) -> None:
        if op == "get":
            await kv.get("bench.key")
        else:
            await kv.put(f"bench.{i % 100}", VALUE)

    async def raw_sequential(op: str) -> list[float]:
        latencies = []
        for i in range(sequential):
            t0 = time.perf_counter()
            await raw_op(op, i)
            latencies.append((time.perf_counter() - t0) * 1e6)
        return latencies

    async def raw_rate(op: str) -> float:
        counter = iter(range(total))

        async def worker() -> None:
            for i in counter:
                await raw_op(op, i)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(100)))
        return total / (time.perf_counter() - t0)

    measured: dict[str, list[float]] = {}

    async def hop() -> None:
        keep("hop_rosey", (await plugin("hop", sequential))["latencies_us"])

    def keep(key: str, values: list[float]) -> None:
        measured.setdefault(key, []).extend(values)

    blocks: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    for op in ("get", "put"):

        async def rosey_seq(op: str = op) -> None:
            keep(f"{op}_rosey", (await plugin(op, sequential))["latencies_us"])

        async def raw_seq(op: str = op) -> None:
            keep(f"{op}_raw", await raw_sequential(op))

        async def rosey_rate(op: str = op) -> None:
            keep(f"rate_{op}_rosey", [total / (await plugin("rate", op, total, 100))["elapsed_s"]])

        async def raw_rate_block(op: str = op) -> None:
            keep(f"rate_{op}_raw", [await raw_rate(op)])

        blocks += [("seq", rosey_seq), ("seq", raw_seq), ("rate", rosey_rate), ("rate", raw_rate_block)]
    blocks += [("seq", hop), ("seq", hop)]  # pairs, so the reordering below keeps every block
    await plugin("get", 50)  # warm up both paths
    await raw_sequential("get")
    for r in range(rounds):
        order = (
            blocks
            if r % 2 == 0
            else [b for pair in zip(blocks[1::2], blocks[::2], strict=True) for b in pair]
        )
        for _, block in order:
            await block()
    await router.stop()
    await core.disconnect()
    out: dict[str, Any] = {"hop_p50_us_rosey": median(measured["hop_rosey"])}
    for op in ("get", "put"):
        out[f"{op}_p50_us_rosey"] = median(measured[f"{op}_rosey"])
        out[f"{op}_p50_us_raw"] = median(measured[f"{op}_raw"])
        out[f"rate_{op}_100_rosey"] = median(measured[f"rate_{op}_rosey"])
        out[f"rate_{op}_100_raw"] = median(measured[f"rate_{op}_raw"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from bench.harness import quiet_logging

    quiet_logging(None)
    result = asyncio.run(measure(quick=args.quick))
    for op in ("get", "put"):
        rosey, raw = result[f"{op}_p50_us_rosey"], result[f"{op}_p50_us_raw"]
        print(
            f"{op} p50: plugin {rosey:.0f} µs, raw KV {raw:.0f} µs "
            f"({rosey / raw:.2f}\u00d7 raw; goal ≤ 2\u00d7)"
        )
        rosey, raw = result[f"rate_{op}_100_rosey"], result[f"rate_{op}_100_raw"]
        print(f"{op}/s at 100 in flight: plugin {rosey:,.0f}, raw KV {raw:,.0f} (goal ≥ 5,000)")
    print(f"service hop p50 (a refused request, no JetStream): {result['hop_p50_us_rosey']:.0f} µs")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
