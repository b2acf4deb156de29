"""What the ``pid-ns`` layer costs a plugin allowed to create processes: ready time and memory.

    .venv/bin/python bench/pidns_cost.py [--runs 9]
    .venv/bin/python bench/pidns_cost.py --ab OTHER_TREE [--rounds 5] [--runs 5]

Starts the echo example plugin with the sandbox of a plugin with ``max_processes > 0``, with
``pid_namespace`` on and off, under both launchers, interleaved, and prints the median spawn ->
READY time of each and the private memory (USS) of the plugin's whole process tree with the
layer on. ``--ab`` runs this same script alternately in another checkout (say, the commit
before a change: ``git archive COMMIT | tar -x -C DIR``) and in this one, ``--rounds`` times
each, and prints both side by side. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

VARIANTS = [(launcher, pidns) for launcher in ("spawn", "zygote") for pidns in (False, True)]


async def measure(runs: int) -> dict[str, list[float]]:
    import psutil

    from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
    from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
    from bot.rosey.plugins.sandbox import SandboxPolicy

    echo = REPO_ROOT / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
    results: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="rosey-bench-") as tmp,
        NatsServer(NatsServerConfig(jetstream=False)) as server,
    ):
        assert server.port is not None
        port = server.port

        async def once(index: int, launcher: str, pidns: bool) -> tuple[float, float]:
            data_dir = Path(tmp) / f"{launcher}-{pidns}-{index}"
            policy = SandboxPolicy.for_plugin(
                plugin_file=echo,
                data_dir=data_dir,
                nats_port=port,
                allow_subprocess=True,
                pid_namespace=pidns,
            )
            options = ProcessOptions(data_dir=data_dir, sandbox=policy, log_output=False, launcher=launcher)
            plugin = PluginProcess("echo", echo, nats_url=server.url, options=options)
            await plugin.start()
            try:
                assert plugin.ready_seconds is not None and plugin.pid is not None
                root = psutil.Process(plugin.pid)
                uss = sum(p.memory_full_info().uss for p in [root, *root.children(recursive=True)])
                return plugin.ready_seconds * 1000, uss / 2**20
            finally:
                await plugin.stop()

        for launcher, pidns in VARIANTS:  # warm the page cache, the bytecode and the zygote
            await once(-1, launcher, pidns)
        for i in range(runs):
            order = VARIANTS if i % 2 else list(reversed(VARIANTS))
            for launcher, pidns in order:
                ready, uss = await once(i, launcher, pidns)
                key = f"{launcher} pid_namespace={'on' if pidns else 'off'}"
                results.setdefault(f"{key} ready ms", []).append(ready)
                results.setdefault(f"{key} tree USS MB", []).append(uss)
        results["pidns.restrict() in a zygote-like fork ms"] = restrict_times(runs * 4, Path(tmp))
    return results


def restrict_times(runs: int, tmp: Path) -> list[float]:
    """The layer alone: ``pidns.restrict()`` in forks of a process that imported what a plugin
    imports (as a zygote child does), from the call to its return in the process running the plugin."""
    import os
    import time

    from bot.rosey.plugins import zygote_child
    from bot.rosey.plugins.sandbox import SandboxPolicy, pidns

    zygote_child._preload()
    policy = SandboxPolicy.for_plugin(plugin_file=None, data_dir=tmp, nats_port=4222, allow_subprocess=True)
    times = []
    for _ in range(runs):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            started = time.perf_counter()
            pidns.restrict(policy)
            os.write(write_end, str(time.perf_counter() - started).encode())
            os._exit(0)
        os.close(write_end)
        times.append(float(os.read(read_end, 100)) * 1000)
        os.close(read_end)
        os.waitpid(pid, 0)
    return times


def run_in(tree: Path, runs: int) -> dict[str, list[float]]:
    script = tree / "bench" / "pidns_cost.py"
    if script.resolve() != Path(__file__).resolve():
        shutil.copy(__file__, script)  # the same measurement in both trees
    out = subprocess.run(
        [sys.executable, str(script), "--runs", str(runs), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        timeout=600,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="starts per variant (default 9)")
    parser.add_argument("--ab", type=Path, help="another checkout to compare with, alternately")
    parser.add_argument("--rounds", type=int, default=5, help="with --ab: runs of each tree (default 5)")
    parser.add_argument("--json", action="store_true", help="print the raw samples as one JSON line")
    args = parser.parse_args()
    if args.ab is None:
        results = asyncio.run(measure(args.runs))
        if args.json:
            print(json.dumps(results))
            return
        for key, samples in results.items():
            print(f"  {key:45} median {statistics.median(samples):7.2f}")
        return
    trees = {"other": args.ab.resolve(), "this": REPO_ROOT}
    merged: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for i in range(args.rounds):
        for name in trees if i % 2 == 0 else reversed(list(trees)):
            for key, samples in run_in(trees[name], args.runs).items():
                merged[name].setdefault(key, []).extend(samples)
    version = sys.version.split()[0]
    print(f"pid-ns A/B, {args.rounds} alternating rounds x {args.runs} starts per variant ({version})")
    print(f"  {'':45} {'median':>19} {'min':>19}")
    print(f"  {'':45} {'other':>9} {'this':>9} {'other':>9} {'this':>9} {'ratio of medians':>17}")
    for key in merged["this"]:
        other, this = merged["other"].get(key, [float("nan")]), merged["this"][key]
        a, b = statistics.median(other), statistics.median(this)
        print(f"  {key:45} {a:9.2f} {b:9.2f} {min(other):9.2f} {min(this):9.2f} {b / a:17.2f}")


if __name__ == "__main__":
    main()
