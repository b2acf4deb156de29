"""``python -m bench.remote_storage``: a plugin's ``self.storage.get`` on a leaf host vs on the hub.

s-remote: a plugin on a host uses the hub's storage service across the leaf connection. One run,
on loopback: a hub (`rosey run`) and a host (`rosey host`) as in ``bench.hosts``, the same plugin
code on both sides (``near`` on the hub, ``far`` on host b), each answering a command by doing
``--gets`` sequential ``self.storage.get`` calls. Commands alternate near/far in rounds, one in
flight; the figure is the command's time divided by ``--gets`` (the command's own round trip is
spread over them, the same on both sides). Reported: p50 / p90 / p99 per get and the ratio.

Usage: python -m bench.remote_storage [--rounds 10] [--per-round 20] [--gets 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bench.hosts import hub_and_host, near_vs_far
from bot.rosey.core.event_bus import EventBus

PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface


class Reader(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "{name}"

    async def on_start(self):
        await self.storage.put("k", "v" * 100)

    async def handle_command(self, event):
        for _ in range(int(event.data["args"][0])):
            await self.storage.get("k")
        await self.publish_result({{"message": "ok"}}, event.correlation_id)
"""


async def measure(rounds: int, per_round: int, gets: int) -> dict[str, Any]:
    data = {"args": [str(gets)], "user": "bench", "channel": "bench"}

    async def once(bus: EventBus, plugin: str) -> float:
        started = time.perf_counter()
        reply = await bus.request(f"rosey.commands.{plugin}.execute", data, "bench", "cid", timeout=30)
        elapsed = time.perf_counter() - started
        if reply.data.get("message") != "ok":
            raise RuntimeError(f"{plugin} answered {reply.data!r}")
        return elapsed / gets

    async with hub_and_host(PLUGIN, "rosey-bench-remote-storage-") as buses:
        # warm-up: connections, interest across the leaf, the bucket
        result = await near_vs_far(once, buses, rounds=rounds, per_round=per_round, warmup=5)
    result["gets"] = gets
    return result


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="python -m bench.remote_storage", description=doc.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="A/B rounds (default 10)")
    parser.add_argument("--per-round", type=int, default=20, help="commands per side per round (default 20)")
    parser.add_argument("--gets", type=int, default=20, help="storage gets per command (default 20)")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.rounds, args.per_round, args.gets))
    print("self.storage.get from a plugin, sequential, per get (same plugin code on both sides)")
    for side in ("local", "leaf"):
        row = result[side]
        where = "plugin on the hub" if side == "local" else "plugin on a leaf host"
        figures = f"p50 {row['p50_ms']:.3f} ms  p90 {row['p90_ms']:.3f}  p99 {row['p99_ms']:.3f}"
        print(f"  {where:22} {figures}  n={row['n']} commands")
    print(f"  leaf / local (p50): {result['ratio_p50']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
