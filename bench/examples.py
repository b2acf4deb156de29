"""The bundled example plugins: a command's round trip, by what the command does.

One :class:`~bot.rosey.testing.PluginHarness` (the bot's router, storage and HTTP gateway) on a
JetStream nats-server, the examples as real processes; each figure is the p50 of a command sent
the way the bot sends it, blocks of each kind interleaved so noise hits all alike:

  roll        !roll 2d6+3          no service: the floor (router -> plugin -> router)
  quote-get   !quote 1             + one storage get
  quote-add   !quote add ...       + one storage update (get + compare-and-set put) and one put
  trivia-a    !trivia a <wrong>    + one storage get
  weather     !weather Paris       + one storage get (cached answer)
  weather-gw  !weather <new city>  + storage get, gateway round trip to a loopback stand-in, put

    python -m bench.examples [--quick]     # prints a table and one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import REPO_ROOT, median, percentile
from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.plugins.plugin_runner import ProcessOptions
from bot.rosey.testing import PluginHarness

EXAMPLES = REPO_ROOT / "bot" / "rosey" / "plugins" / "examples"


async def measure(*, quick: bool = False) -> dict[str, Any]:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.examples.owm_standin import CITIES, OwmStandIn  # the stand-in of the tests

    rounds, block = (3, 30) if quick else (5, 100)
    owm = OwmStandIn(api_key="owm-" + secrets.token_hex(16)).start()
    with tempfile.TemporaryDirectory(prefix="rosey-bench-examples-") as tmp:
        server = NatsServer(NatsServerConfig(work_dir=Path(tmp) / "nats", jetstream=True))
        server.start()
        try:
            async with PluginHarness(server.url, state_dir=Path(tmp) / "state") as harness:
                rule = {"url": owm.base_url, "secret": "k", "inject": "query:appid", "allow_private": True}
                await harness.allow_http(
                    "weather", {"allow": [rule], "requests_per_minute": 100_000}, secrets={"k": owm.api_key}
                )
                await asyncio.gather(
                    harness.start_plugin("roll", EXAMPLES / "dice_plugin.py"),
                    harness.start_plugin("quote", EXAMPLES / "quote_plugin.py"),
                    harness.start_plugin("trivia", EXAMPLES / "trivia_plugin.py"),
                    harness.start_plugin(
                        "weather",
                        EXAMPLES / "weather_plugin.py",
                        options=ProcessOptions(extra_env={"WEATHER_API_URL": owm.base_url}),
                    ),
                )
                await harness.command("quote", ["add", "warm", "up"])
                await harness.command("trivia", ["start"])
                await harness.command("weather", ["Paris"])
                fresh = iter(range(10**9))
                CITIES.update({f"c{n}": CITIES["paris"] for n in range(rounds * block + 10)})
                kinds: dict[str, Callable[[], tuple[str, list[str]]]] = {
                    "roll": lambda: ("roll", ["2d6+3"]),
                    "quote-get": lambda: ("quote", ["1"]),
                    "quote-add": lambda: ("quote", ["add", "a", "quote"]),
                    "trivia-a": lambda: ("trivia", ["a", "certainly-wrong"]),
                    "weather": lambda: ("weather", ["Paris"]),
                    "weather-gw": lambda: ("weather", [f"c{next(fresh)}"]),
                }
                samples: dict[str, list[float]] = {k: [] for k in kinds}
                for round_ in range(rounds):
                    order = list(kinds) if round_ % 2 == 0 else list(reversed(kinds))
                    for kind in order:
                        for _ in range(block):
                            name, args = kinds[kind]()
                            started = time.perf_counter()
                            reply = await harness.command(name, args)
                            samples[kind].append((time.perf_counter() - started) * 1e6)
                            if not reply.ok and kind != "trivia-a":
                                raise RuntimeError(f"{kind}: {reply.message}")
        finally:
            server.stop()
            owm.close()
    return {
        kind: {"p50_us": round(median(v)), "p99_us": round(percentile(v, 99)), "n": len(v)}
        for kind, v in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.examples", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(quick=args.quick))
    print(f"{'command':<12} {'p50':>9} {'p99':>9} {'n':>6}")
    for kind, row in result.items():
        print(f"{kind:<12} {row['p50_us']:>7} µs {row['p99_us']:>7} µs {row['n']:>6}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
