"""``python -m bench.dev_reload``: from saving a plugin to its new version answering, under ``rosey dev``.

A real ``rosey dev --no-chat`` in a fresh project made by ``rosey new hello``. Each round writes a new
answer into ``plugins/hello/plugin.py`` and then sends ``!hello`` through the bot's own router (as
``rosey send`` does, from one open connection) until the answer is the new one. Reported per round:
save -> ``reloaded`` line (watcher + check + stop + start + ready) and save -> first new answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bot.rosey.cli.client import connect
from bot.rosey.config import load_config
from bot.rosey.runtime import read_runtime
from bot.rosey.services.router import CoreRouter, OutcomeKind, RouterConfig

ROSEY = [sys.executable, "-m", "bot.rosey"]


async def _line(stream: asyncio.StreamReader, needle: str, timeout: float = 60.0) -> str:
    async def scan() -> str:
        while True:
            raw = await stream.readline()
            if not raw:
                raise RuntimeError(f"rosey dev ended before {needle!r}")
            if needle in (text := raw.decode()):
                return text

    return await asyncio.wait_for(scan(), timeout)


async def measure(rounds: int, launcher: str) -> tuple[list[float], list[float]]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "ROSEY_STATE_DIR")}
    with tempfile.TemporaryDirectory(prefix="rosey-dev-bench-") as tmp:
        project = Path(tmp)
        (project / "rosey.toml").write_text(f'[rosey]\nlauncher = "{launcher}"\nlog_level = "warning"\n')
        new = await asyncio.create_subprocess_exec(*ROSEY, "new", "hello", cwd=project, env=env)
        assert await new.wait() == 0
        plugin = project / "plugins" / "hello" / "plugin.py"
        proc = await asyncio.create_subprocess_exec(
            *ROSEY,
            "dev",
            "--no-chat",
            cwd=project,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        try:
            await _line(proc.stdout, "rosey dev: watching")
            config = load_config(base_dir=project)
            bus = await connect(read_runtime(config.state_dir))
            router = CoreRouter(bus, RouterConfig(command_timeout=5.0), source="rosey-bench")
            await router.start(chat=False)
            to_line, to_answer = [], []
            source = plugin.read_text()
            try:
                for i in range(rounds):
                    answer = f"Answer {i}"
                    text = source.replace('f"Hello, {who}!"', repr(answer))
                    saved = time.perf_counter()
                    plugin.write_text(text)
                    reloaded = asyncio.ensure_future(_line(proc.stdout, "hello reloaded"))
                    while True:
                        outcome = await router.execute("hello", [], user="bench", channel="bench")
                        if outcome.kind is OutcomeKind.RESULT and outcome.message == answer:
                            to_answer.append(time.perf_counter() - saved)
                            break
                        await asyncio.sleep(0.005)  # a benchmark's polling gap, not a test's wait
                    await reloaded
                    to_line.append(float(reloaded.result().split(" in ")[1].split("s ")[0]))
            finally:
                await router.stop()
                await bus.disconnect()
        finally:
            proc.terminate()
            await proc.wait()
    return to_line, to_answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--launcher", choices=["zygote", "spawn"], default="zygote")
    args = parser.parse_args()
    to_line, to_answer = asyncio.run(measure(args.rounds, args.launcher))
    print(
        f"rosey dev, {args.launcher}, {args.rounds} saves: "
        f"watcher event -> reloaded median {statistics.median(to_line) * 1000:.0f} ms "
        f"(max {max(to_line) * 1000:.0f}); "
        f"save -> new version answering median {statistics.median(to_answer) * 1000:.0f} ms "
        f"(min {min(to_answer) * 1000:.0f}, max {max(to_answer) * 1000:.0f})"
    )


if __name__ == "__main__":
    main()
