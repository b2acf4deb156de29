"""``python -m bench.hosts``: command round trip hub -> plugin on a leaf host vs hub -> local plugin.

One run, on loopback: a hub (`rosey run`) and a host (`rosey host`), each a real process with its
own nats-server, the host a leaf node of the hub. The same plugin code runs on both sides
(``near`` on the hub, ``far`` on the host). From a connection of the hub's core identity, as the
router asks (the remote plugin on the hub's connection for that host, whose inbox is the only
one the host may answer into), requests alternate near/far in rounds, one in flight, so both
see the same machine load. Reported: p50 / p90 / p99 per side and the ratio of medians.

Usage: python -m bench.hosts [--rounds 20] [--per-round 100] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.rosey.broker.identities import CORE_INBOX_PREFIX
from bot.rosey.broker.leaf import host_inbox_prefix
from bot.rosey.core.event_bus import EventBus
from bot.rosey.runtime import read_runtime

ROSEY = [sys.executable, "-m", "bot.rosey"]

PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface


class Echo(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "{name}"

    async def handle_command(self, event):
        await self.publish_result({{"message": " ".join(event.data.get("args", []))}}, event.correlation_id)
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "ROSEY_STATE_DIR")}


async def _start(argv: list[str], cwd: Path, ready: bytes) -> asyncio.subprocess.Process:
    with (cwd / "process.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=_env(),
        )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line.startswith(ready):
        proc.kill()
        raise RuntimeError(f"{argv} did not get ready: {line!r}; see {cwd / 'process.log'}")
    return proc


async def _wait_heartbeat(bus: EventBus) -> None:
    seen = asyncio.Event()

    async def on_beat(_: Any) -> None:
        seen.set()

    subscription = await bus.subscribe("rosey.hosts.b.heartbeat", on_beat)
    await asyncio.wait_for(seen.wait(), 30)
    await subscription.unsubscribe()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(at(0.90) * 1000, 3),
        "p99_ms": round(at(0.99) * 1000, 3),
        "n": len(ordered),
    }


@contextlib.asynccontextmanager
async def hub_and_host(plugin: str, prefix: str) -> AsyncIterator[tuple[EventBus, EventBus]]:
    """A hub (`rosey run`) running ``plugin`` (source with a ``{name}`` field) as ``near`` and a
    host b (`rosey host`, a leaf of the hub) running it as ``far``, both real processes with their
    own nats-servers in a temporary directory; yields the hub's core connection and its connection
    for host b (as the router asks each), once b's first heartbeat arrived. Everything it started
    is stopped and removed on exit."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    hub_dir, host_dir = work / "hub", work / "host"
    for directory, name in ((hub_dir, "near"), (host_dir, "far")):
        (directory / "plugins").mkdir(parents=True)
        (directory / "plugins" / f"{name}.py").write_text(plugin.format(name=name))
    (hub_dir / "rosey.toml").write_text(
        '[rosey]\nentry_points = false\n[hub]\nleaf_listen = "127.0.0.1:0"\n'
        '[hosts.b]\nplugins = ["far"]\n[web]\nenabled = false\n'
    )
    procs: list[asyncio.subprocess.Process] = []
    buses: list[EventBus] = []
    try:
        procs.append(await _start([*ROSEY, "run", "--no-chat"], hub_dir, b"Rosey ready"))
        state = hub_dir / ".rosey" / "hosts"
        shutil.copy(state / "b.credentials", host_dir / "b.credentials")
        (host_dir / "b.credentials").chmod(0o600)
        leaf = (state / "leaf_url").read_text().strip()
        (host_dir / "rosey.toml").write_text(
            "[rosey]\nentry_points = false\n"
            f'[host]\nname = "b"\nhub = "{leaf}"\ncredentials = "b.credentials"\n'
        )
        procs.append(await _start([*ROSEY, "host"], host_dir, b"Rosey host b ready"))
        info = read_runtime(hub_dir / ".rosey")
        for inbox_prefix in (CORE_INBOX_PREFIX, host_inbox_prefix("b")):
            bus = EventBus(info.nats_url, user=info.user, password=info.password, inbox_prefix=inbox_prefix)
            await bus.connect()
            buses.append(bus)
        await _wait_heartbeat(buses[0])
        yield buses[0], buses[1]
    finally:
        for bus in buses:
            with contextlib.suppress(Exception):
                await bus.disconnect()
        for proc in reversed(procs):
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        shutil.rmtree(work, ignore_errors=True)


async def near_vs_far(
    once: Callable[[EventBus, str], Awaitable[float]],
    buses: tuple[EventBus, EventBus],
    *,
    rounds: int,
    per_round: int,
    warmup: int,
) -> dict[str, Any]:
    """``once(bus, plugin)`` for ``near`` and ``far`` in alternating rounds (which side goes first
    flips each round, so both see the same machine load), after ``warmup`` of each; the
    percentiles of each side and the ratio of medians."""
    near_bus, far_bus = buses
    for _ in range(warmup):
        await once(near_bus, "near")
        await once(far_bus, "far")
    near: list[float] = []
    far: list[float] = []
    for index in range(rounds):
        order = [(near_bus, "near", near), (far_bus, "far", far)]
        if index % 2:
            order.reverse()
        for bus, plugin, samples in order:
            for _ in range(per_round):
                samples.append(await once(bus, plugin))
    result: dict[str, Any] = {"local": _percentiles(near), "leaf": _percentiles(far)}
    result["ratio_p50"] = round(result["leaf"]["p50_ms"] / result["local"]["p50_ms"], 2)
    return result


async def measure(rounds: int, per_round: int) -> dict[str, Any]:
    data = {"args": ["ping"], "user": "bench", "channel": "bench"}

    async def once(bus: EventBus, plugin: str) -> float:
        started = time.perf_counter()
        reply = await bus.request(f"rosey.commands.{plugin}.execute", data, "bench", "cid", timeout=10)
        elapsed = time.perf_counter() - started
        if reply.data.get("message") != "ping":
            raise RuntimeError(f"{plugin} answered {reply.data!r}")
        return elapsed

    async with hub_and_host(PLUGIN, "rosey-bench-hosts-") as buses:
        # warm-up: connections, interest across the leaf, both plugins' caches
        return await near_vs_far(once, buses, rounds=rounds, per_round=per_round, warmup=50)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hosts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="A/B rounds (default 20)")
    parser.add_argument(
        "--per-round", type=int, default=100, help="requests per side per round (default 100)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.rounds, args.per_round))
    print("command round trip, one in flight, hub core -> plugin (same plugin code on both sides)")
    for side in ("local", "leaf"):
        row = result[side]
        where = "hub -> local plugin" if side == "local" else "hub -> plugin on leaf host"
        figures = f"p50 {row['p50_ms']:.3f} ms  p90 {row['p90_ms']:.3f}  p99 {row['p99_ms']:.3f}"
        print(f"  {where:28} {figures}  n={row['n']}")
    print(f"  leaf / local (p50): {result['ratio_p50']}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
