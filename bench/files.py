"""Files (``send_file``): a sandboxed plugin's upload to the files service vs the bare NATS floor.

The real RoseyApp runs one plugin (``bench/plugins/files_bench_plugin.py``) that times its own
uploads (begin, the pieces as base64 in messages that fit ``max_payload``, commit: the service
writes them under ``<state>/files``). The floor is the same number of request/reply round trips
with pieces of the same size, from this process to a responder that only answers, on the same
server. Blocks alternate (Rosey, floor, floor, Rosey, ...) so noise hits both alike.

    python -m bench.files [--quick]      # prints a table and one JSON line
Also the ``files`` section of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import BENCH_DIR, median
from bot.rosey.app import RoseyApp
from bot.rosey.config import STATE_DIR_ENV, load_config
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.runtime import read_runtime
from bot.rosey.services.router import CoreRouter

PLUGIN = BENCH_DIR / "plugins" / "files_bench_plugin.py"
NAME = "filesbench"
SIZES = {"1kb": 1_000, "1mb": 1_000_000, "8mb": 8_000_000}
FLOOR_SUBJECT = "bench.files.floor"


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
command_timeout = 300
max_cpu_percent = 200
max_disk_mb = 4096

[plugins.{NAME}.files]
max_pending = 10000
expire_seconds = 600
"""


async def measure(*, quick: bool = False) -> dict[str, Any]:
    counts = {"1kb": 100, "1mb": 10, "8mb": 3} if quick else {"1kb": 300, "1mb": 30, "8mb": 8}
    rounds = 2 if quick else 3
    saved = os.environ.pop(STATE_DIR_ENV, None)
    try:
        with tempfile.TemporaryDirectory(prefix="rosey-files-bench-") as tmp:
            workdir = Path(tmp)
            (workdir / "rosey.toml").write_text(_toml())
            app = RoseyApp(load_config(workdir / "rosey.toml"))
            try:
                results = await app.start()
                assert all(r is None for r in results.values()), results
                return await _run(app, counts, rounds)
            finally:
                await app.stop()
    finally:
        if saved is not None:
            os.environ[STATE_DIR_ENV] = saved


async def _run(app: RoseyApp, counts: dict[str, int], rounds: int) -> dict[str, Any]:
    runtime = read_runtime(app.config.state_dir)
    core = EventBus(runtime.nats_url, name="bench", user=runtime.user, password=runtime.password)
    await core.connect()
    floor_bus = EventBus(runtime.nats_url, name="bench-floor", user=runtime.user, password=runtime.password)
    await floor_bus.connect()
    router = CoreRouter(core, source="bench")
    await router.start(chat=False)
    assert app.files is not None
    chunk = app.files.chunk_bytes()

    async def answer(event: Event) -> None:
        await floor_bus.respond(event, Event(subject=str(event.reply), data={"ok": True}, source="floor"))

    await floor_bus.subscribe(FLOOR_SUBJECT, answer)
    await floor_bus.flush()

    async def floor(size: int, count: int) -> list[float]:
        """begin + one request per piece (same base64 size) + commit, to a bare responder."""
        data = os.urandom(size)
        latencies = []
        for _ in range(count):
            t0 = time.perf_counter()
            await core.request(FLOOR_SUBJECT, {"name": "bench.bin", "size": size}, "bench", timeout=30)
            for offset in range(0, size, chunk):
                piece = base64.b64encode(data[offset : offset + chunk]).decode("ascii")
                await core.request(FLOOR_SUBJECT, {"offset": offset, "data": piece}, "bench", timeout=30)
            await core.request(FLOOR_SUBJECT, {"upload": "x"}, "bench", timeout=30)
            latencies.append((time.perf_counter() - t0) * 1e6)
        return latencies

    async def plugin(size: int, count: int) -> list[float]:
        outcome = await router.execute(NAME, ["upload", str(size), str(count)], timeout=300)
        if not outcome.ok:
            raise RuntimeError(f"files bench plugin failed: {outcome.message}")
        return [float(x) for x in outcome.data["latencies_us"]]

    measured: dict[str, list[float]] = {}
    await plugin(1000, 20)  # warm up both paths
    await floor(1000, 20)
    for r in range(rounds):
        for label, size in SIZES.items():
            pair = [("rosey", plugin), ("floor", floor)]
            for kind, run in pair if r % 2 == 0 else pair[::-1]:
                measured.setdefault(f"{label}_{kind}", []).extend(await run(size, counts[label]))
    await router.stop()
    await floor_bus.disconnect()
    await core.disconnect()
    out: dict[str, Any] = {"chunk_bytes": chunk}
    for label, size in SIZES.items():
        rosey, raw = median(measured[f"{label}_rosey"]), median(measured[f"{label}_floor"])
        out[f"upload_{label}_p50_us_rosey"] = rosey
        out[f"upload_{label}_p50_us_floor"] = raw
        out[f"upload_{label}_mb_s_rosey"] = size / rosey  # bytes/µs = MB/s
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.files", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from bench.harness import quiet_logging

    quiet_logging(None)
    result = asyncio.run(measure(quick=args.quick))
    for label in SIZES:
        rosey, floor = result[f"upload_{label}_p50_us_rosey"], result[f"upload_{label}_p50_us_floor"]
        print(
            f"upload {label} p50: plugin {rosey / 1000:.2f} ms, NATS floor {floor / 1000:.2f} ms "
            f"({rosey / floor:.2f}\u00d7 floor; {result[f'upload_{label}_mb_s_rosey']:.0f} MB/s)"
        )
    print(json.dumps(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
