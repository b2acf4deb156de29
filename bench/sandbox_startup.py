"""What the sandbox costs at start-up: plugin ready time with and without it, side by side.

    .venv/bin/python bench/sandbox_startup.py [--runs 21]

Starts one private nats-server, then starts the echo example plugin ``--runs`` times with the
default sandbox policy and ``--runs`` times without, interleaved (so drift in machine load hits
both alike), and prints the median and spread of spawn -> READY as measured by PluginProcess.
It also times ``sandbox.apply()`` alone in fresh interpreters, the part the sandbox adds.
Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig  # noqa: E402
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions  # noqa: E402
from bot.rosey.plugins.sandbox import SandboxPolicy  # noqa: E402

ECHO = REPO_ROOT / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"

APPLY_ONLY = """
import json, sys, time
from pathlib import Path
from bot.rosey.plugins.sandbox import SandboxPolicy, apply
policy = SandboxPolicy.from_json(sys.argv[1])
start = time.perf_counter()
report = apply(policy)
elapsed = time.perf_counter() - start
print(json.dumps({"ms": elapsed * 1000, "applied": list(report.applied)}))
"""


async def ready_time(server: NatsServer, state: Path, index: int, sandboxed: bool) -> float:
    data_dir = state / f"{'sb' if sandboxed else 'plain'}-{index}"
    assert server.port is not None
    policy = SandboxPolicy.for_plugin(plugin_file=ECHO, data_dir=data_dir, nats_port=server.port)
    options = ProcessOptions(data_dir=data_dir, sandbox=policy if sandboxed else None, log_output=False)
    plugin = PluginProcess("echo", ECHO, nats_url=server.url, options=options)
    await plugin.start()
    try:
        assert plugin.ready_seconds is not None
        return plugin.ready_seconds * 1000
    finally:
        await plugin.stop()


def apply_time(policy: SandboxPolicy) -> float:
    out = subprocess.run(
        [sys.executable, "-c", APPLY_ONLY, policy.to_json()],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        timeout=30,
    ).stdout
    return float(json.loads(out)["ms"])


def describe(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(ordered):7.1f} ms   min {ordered[0]:7.1f}   p90 {p90:7.1f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="starts per variant (default 21)")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="rosey-bench-") as tmp,
        NatsServer(NatsServerConfig(jetstream=False)) as server,
    ):
        state = Path(tmp)
        await ready_time(server, state, -1, True)  # warm the page cache and bytecode once
        await ready_time(server, state, -2, False)
        plain: list[float] = []
        sandboxed: list[float] = []
        for i in range(args.runs):
            order = (True, False) if i % 2 else (False, True)
            for flag in order:
                (sandboxed if flag else plain).append(await ready_time(server, state, i, flag))
        assert server.port is not None
        policy = SandboxPolicy.for_plugin(plugin_file=ECHO, data_dir=state / "apply", nats_port=server.port)
        (state / "apply").mkdir()
        applies = [apply_time(policy) for _ in range(args.runs)]

    print(f"echo plugin, spawn -> READY, {args.runs} starts each, interleaved ({sys.version.split()[0]})")
    print(f"  without sandbox   {describe(plain)}")
    print(f"  with sandbox      {describe(sandboxed)}")
    delta = statistics.median(sandboxed) - statistics.median(plain)
    print(f"  difference of medians: {delta:+.1f} ms")
    print(f"  sandbox.apply() alone, fresh interpreter: {describe(applies)}")


if __name__ == "__main__":
    asyncio.run(main())
