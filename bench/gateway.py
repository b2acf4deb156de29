"""HTTP gateway round trip: ``self.http.get`` from a plugin process (NATS -> the host's gateway ->
a loopback HTTP server) against a direct httpx request from the same process to the same server.

Both legs run in one plugin process in alternating blocks (see ``bench/plugins/http_plugin.py``);
the gateway runs in this process on its own core connection, as in ``rosey run``, with a grant
allowing the server (``allow_private``: it is on loopback), and the HTTP server is a third
process. The figure is the p50 overhead in µs (gateway p50 - direct p50); the goal is ≤ 1.5 ms.

    python -m bench.gateway [--quick]      # prints one JSON object
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import BENCH_DIR, GW_NAME, REPO_ROOT, BenchEnv, bench_env, median, percentile
from bot.rosey.core.event_bus import EventBus
from bot.rosey.gateway_config import parse_http_grant
from bot.rosey.services.gateway import HttpGateway
from bot.rosey.services.gateway_audit import AuditLog

GW_PLUGIN = GW_NAME
HTTP_PLUGIN = BENCH_DIR / "plugins" / "http_plugin.py"


async def measure(env: BenchEnv, *, quick: bool) -> dict[str, Any]:
    server = subprocess.Popen(  # noqa: ASYNC220 (the harness kills what it holds in env.children)
        [sys.executable, "-m", "bench.http_server"], cwd=REPO_ROOT, stdout=subprocess.PIPE
    )
    env.children.append(server)
    assert server.stdout is not None
    port = int(await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), 15))
    url = f"http://127.0.0.1:{port}/data/2.5/weather"
    grant = parse_http_grant(
        GW_PLUGIN,
        {
            "allow": [{"url": f"http://127.0.0.1:{port}/data/2.5/", "allow_private": True}],
            "requests_per_minute": 1_000_000,
        },
        {},
    )
    assert grant is not None and env.router is not None
    bus = EventBus(env.url, name="rosey-http", user=env.core.user, password=env.core.password)
    await bus.connect()
    gateway = HttpGateway(bus, {GW_PLUGIN: grant}, {}, audit=AuditLog(Path(tempfile.mkdtemp(dir=env.state))))
    await gateway.start()
    plugin = env.plugin(GW_PLUGIN, plugin_file=HTTP_PLUGIN, sandbox=False)
    await plugin.start()
    rounds, block = (4, 100) if quick else (20, 150)
    try:
        outcome = await env.router.execute(GW_PLUGIN, [url, str(rounds), str(block)], timeout=300)
        if not outcome.ok:
            raise RuntimeError(f"gateway bench failed: {outcome.kind} {outcome.message}")
        samples = outcome.data
    finally:
        await plugin.stop()
        await gateway.stop()
        await bus.disconnect()
        env.kill(server)
    gw, direct = samples["gateway"], samples["direct"]
    result = {
        "samples": len(gw),
        "p50_us_gateway": median(gw) * 1e6,
        "p50_us_direct": median(direct) * 1e6,
        "p99_us_gateway": percentile(gw, 99) * 1e6,
        "p99_us_direct": percentile(direct, 99) * 1e6,
    }
    result["overhead_p50_us"] = result["p50_us_gateway"] - result["p50_us_direct"]
    return result


async def _main(quick: bool) -> dict[str, Any]:
    async with bench_env(names=(GW_PLUGIN,)) as env:
        return await measure(env, quick=quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from bench.harness import quiet_logging

    quiet_logging(None)
    json.dump(asyncio.run(_main(args.quick)), sys.stdout)
    print()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
