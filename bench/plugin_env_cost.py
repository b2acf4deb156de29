"""What a plugin's own environment costs: the same idle plugin forked from the zygote, spawned
with Rosey's interpreter, and spawned in an environment of its own (``rosey plugins install``).

A plugin with its own environment is always spawned: the zygote has Rosey's imports loaded
and cannot switch to another environment's packages. For each round and each mode (the order
alternates between rounds), N idle plugins are started at once, sandbox on, as ``rosey run``
starts them; "ready each" is one plugin's spawn -> ready, "all ready" the wall time for all N.
Each then answers one command and its USS / RSS are read with psutil. Medians; asserts nothing.

    .venv/bin/python bench/plugin_env_cost.py [--plugins 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.plugin_env_install import install
from bot.rosey.plugin_envs import Dependencies, PluginEnvironment
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.plugins.process.zygote import Zygote
from bot.rosey.plugins.sandbox import SandboxPolicy

IDLE = Path(__file__).resolve().parent / "plugins" / "idle_plugin.py"
MB = 1024 * 1024
MODES = ("zygote", "spawn", "own-env")


def build_environment(state: Path) -> PluginEnvironment:
    """One environment (tabulate, which the idle plugin never imports: the cost measured is the
    environment's, not a library's)."""
    source = state / "src"
    source.mkdir()
    (source / "requirements.txt").write_text("tabulate\n")
    env = PluginEnvironment(
        plugin="bench",
        directory=source,
        dependencies=Dependencies(file=source / "requirements.txt", requirements=("tabulate",)),
        link=state / "venvs" / "bench",
    )
    result = install(env)
    print(f"environment built in {result.seconds:.2f} s by {result.installer}: {result.venv}", flush=True)
    return env


async def one_round(
    mode: str, n: int, server: NatsServer, bus: EventBus, state: Path, env: PluginEnvironment
) -> dict[str, float]:
    zygote: Zygote | None = None
    if mode == "zygote":
        zygote = Zygote()
        await zygote.wait_ready()  # as in `rosey run`, which starts it before NATS
    processes = []
    venv = env.venv
    assert venv is not None and env.python is not None
    for i in range(n):
        data_dir = state / mode / f"p{i}"
        own = mode == "own-env"
        policy = SandboxPolicy.for_plugin(
            plugin_file=IDLE,
            data_dir=data_dir,
            nats_port=server.port or 4222,
            extra_read=[venv] if own else [],
        )
        options = ProcessOptions(
            data_dir=data_dir,
            launcher="zygote" if mode == "zygote" else "spawn",
            zygote=zygote,
            sandbox=policy,
            log_output=False,
            site_dirs=env.site_dirs() if own else (),
        )
        python = str(env.python) if own else None
        processes.append(PluginProcess(f"p{i}", IDLE, server.url, python_executable=python, options=options))
    figures: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(p.start() for p in processes))
        figures["all_ready_s"] = time.perf_counter() - t0
        figures["ready_each_ms"] = statistics.median(p.ready_seconds or 0.0 for p in processes) * 1000
        assert all(
            p.launched_by is not None and p.launched_by.value == ("zygote" if zygote else "spawn")
            for p in processes
        )
        await asyncio.gather(
            *(
                bus.request(
                    Subjects.plugin_command(p.plugin_name, "execute"),
                    {"args": ["hi"]},
                    "bench",
                    correlation_id=uuid.uuid4().hex,
                    timeout=10,
                )
                for p in processes
            )
        )
        figures["uss_mb"] = (
            statistics.median(psutil.Process(p.pid).memory_full_info().uss for p in processes) / MB
        )
        figures["rss_mb"] = statistics.median(psutil.Process(p.pid).memory_info().rss for p in processes) / MB
    finally:
        await asyncio.gather(*(p.stop() for p in processes))
        if zygote is not None:
            await zygote.aclose()
    return figures


async def main(n: int, rounds: int) -> None:
    state = Path(tempfile.mkdtemp(prefix="rosey-env-bench-"))
    env = await asyncio.to_thread(build_environment, state)
    server = NatsServer(NatsServerConfig(work_dir=state / "nats", jetstream=False))
    server.start()
    bus = EventBus(server.url, name="bench-core")
    await bus.connect()
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    try:
        for r in range(rounds):
            for mode in MODES if r % 2 == 0 else tuple(reversed(MODES)):
                figures = await one_round(mode, n, server, bus, state, env)
                results[mode].append(figures)
                print(
                    f"round {r + 1} {mode:8s} " + " ".join(f"{k}={v:.3f}" for k, v in figures.items()),
                    flush=True,
                )
    finally:
        await bus.disconnect()
        server.stop()
    print(f"\nmedians over {rounds} rounds, {n} plugins at once, sandbox on, {psutil.cpu_count()} CPUs")
    print(f"{'figure':16s}" + "".join(f"{mode:>12s}" for mode in MODES))
    for key in ("ready_each_ms", "all_ready_s", "uss_mb", "rss_mb"):
        row = [statistics.median(f[key] for f in results[mode]) for mode in MODES]
        print(f"{key:16s}" + "".join(f"{v:12.2f}" for v in row))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugins", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.plugins, args.rounds))
