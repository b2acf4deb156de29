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
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.hosts import ROSEY, _percentiles, _start, _wait_heartbeat
from bot.rosey.broker.identities import CORE_INBOX_PREFIX
from bot.rosey.broker.leaf import host_inbox_prefix
from bot.rosey.core.event_bus import EventBus
from bot.rosey.runtime import read_runtime

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
    work = Path(tempfile.mkdtemp(prefix="rosey-bench-remote-storage-"))
    hub_dir, host_dir = work / "hub", work / "host"
    for directory, name in ((hub_dir, "near"), (host_dir, "far")):
        (directory / "plugins").mkdir(parents=True)
        (directory / "plugins" / f"{name}.py").write_text(PLUGIN.format(name=name))
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
        for prefix in (CORE_INBOX_PREFIX, host_inbox_prefix("b")):
            bus = EventBus(info.nats_url, user=info.user, password=info.password, inbox_prefix=prefix)
            await bus.connect()
            buses.append(bus)
        near_bus, far_bus = buses
        await _wait_heartbeat(near_bus)
        data = {"args": [str(gets)], "user": "bench", "channel": "bench"}

        async def once(bus: EventBus, plugin: str) -> float:
            started = time.perf_counter()
            reply = await bus.request(f"rosey.commands.{plugin}.execute", data, "bench", "cid", timeout=30)
            elapsed = time.perf_counter() - started
            if reply.data.get("message") != "ok":
                raise RuntimeError(f"{plugin} answered {reply.data!r}")
            return elapsed / gets

        for _ in range(5):  # warm-up: connections, interest across the leaf, the bucket
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
        result: dict[str, Any] = {"local": _percentiles(near), "leaf": _percentiles(far), "gets": gets}
        result["ratio_p50"] = round(result["leaf"]["p50_ms"] / result["local"]["p50_ms"], 2)
        return result
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
