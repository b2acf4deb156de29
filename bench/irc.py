"""``irc``: Rosey on IRC end to end, against a bot written directly on the same IRC library.

Both run against one real IRC server (miniircd, the pure-Python server the tests use, on
loopback) in the same run:

* **round trip** — a user says ``!echo <token>`` in a channel and waits for the answer. Rosey:
  client -> server -> IRC adapter process -> NATS -> core relay -> router -> ``echo`` plugin
  process -> router -> IRC adapter -> server -> client, all under the real ``rosey run``
  (sandboxed adapter and plugin). Floor: the same client -> server -> a minimal pydle echo bot
  (``irc_echo_bot.py``, its own process) -> server -> client. Samples alternate A/B. The
  adapter's outbound pacing is opened (rate = burst = 1000): the pacer's job is to delay replies
  past a burst of 5 (1 per second by default), which would be measured instead of the path.
* **inbound rate** — one user says 500 messages per second into the channel for a few seconds;
  every ``rosey.events.message`` the core publishes for them is counted on NATS with the core's
  credentials (from the runtime file): none may be missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from bench.harness import BENCH_DIR, REPO_ROOT, percentile
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.runtime import read_runtime

SERVER_HOST = "127.0.0.1"
CHANNEL_ROSEY = "#bench"
CHANNEL_RAW = "#bench-raw"


async def _start_rosey(workdir: Path, port: int) -> asyncio.subprocess.Process:
    (workdir / "plugins").mkdir()
    echo = REPO_ROOT / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
    (workdir / "plugins" / "echo.py").write_text(echo.read_text())
    (workdir / "rosey.toml").write_text(
        textwrap.dedent(
            f"""
            [adapters.irc]
            type = "irc"
            server = "{SERVER_HOST}"
            port = {port}
            tls = false
            nick = "rosey"
            channels = ["{CHANNEL_ROSEY}"]
            rate = 1000
            burst = 1000
            max_queued = 100000
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "ROSEY_STATE_DIR")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.rosey", "run", "--no-chat",
        cwd=workdir, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=(workdir / "rosey-run.log").open("wb"), env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line.startswith(b"Rosey ready"):
        proc.kill()
        raise RuntimeError(
            f"rosey run did not start: {line!r}: {(workdir / 'rosey-run.log').read_text()[-2000:]}"
        )
    return proc


async def _start_raw(port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCH_DIR / "irc_echo_bot.py"), SERVER_HOST, str(port), "rawbot", CHANNEL_RAW,
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if line.strip() != b"READY":
        proc.kill()
        raise RuntimeError(f"the raw echo bot did not start: {line!r}")
    return proc


async def _round_trip(user: Any, channel: str, bot: str, token: str) -> float:
    started = time.perf_counter()
    await user.send(f"PRIVMSG {channel} :!echo {token}")
    await user.expect(
        lambda m: m.command == "PRIVMSG" and (m.source or "").startswith(bot + "!") and token in m.params[-1],
        timeout=10,
    )
    return time.perf_counter() - started


async def _breakdown(user: Any, state: Path, samples: int) -> dict[str, Any]:
    """Where a Rosey round trip's time goes: arrival times (this process's clock) of the adapter's
    event, the core's relayed event and the router's reply on NATS, then the answer on IRC."""
    info = read_runtime(state)
    bus = EventBus(info.nats_url, name="bench-irc-stages", user=info.user, password=info.password)
    await bus.connect()
    stamps: dict[str, dict[str, float]] = {}

    def stamp(stage: str) -> Any:
        async def handler(event: Event) -> None:
            text = str(event.data.get("text", ""))
            token = next((word for word in text.split() if word.startswith("b") and word[1:].isdigit()), None)
            if token is not None:
                stamps.setdefault(token, {})[stage] = time.perf_counter()

        return handler

    await bus.subscribe("rosey.adapters.irc.events.message", stamp("adapter"))
    await bus.subscribe("rosey.events.message", stamp("core"))
    await bus.subscribe("rosey.chat.irc.send", stamp("router"))
    await bus.flush()
    stages: dict[str, list[float]] = {"irc_in": [], "relay": [], "router_plugin": [], "irc_out": []}
    try:
        for i in range(samples):
            token = f"b{i}"
            started = time.perf_counter()
            await _round_trip(user, CHANNEL_ROSEY, "rosey", token)
            ended = time.perf_counter()
            got = stamps.get(token, {})
            if len(got) == 3:
                stages["irc_in"].append(got["adapter"] - started)
                stages["relay"].append(got["core"] - got["adapter"])
                stages["router_plugin"].append(got["router"] - got["core"])
                stages["irc_out"].append(ended - got["router"])
    finally:
        await bus.disconnect()
    return {f"stage_p50_us_{name}": percentile(values, 50) * 1e6 for name, values in stages.items() if values}


async def _inbound_rate(user: Any, state: Path, rate: int, seconds: float) -> dict[str, Any]:
    info = read_runtime(state)
    bus = EventBus(info.nats_url, name="bench-irc-count", user=info.user, password=info.password)
    await bus.connect()
    seen: set[int] = set()
    last = asyncio.Event()
    total = int(rate * seconds)

    async def count(event: Event) -> None:
        text = str(event.data.get("text", ""))
        if event.data.get("platform") == "irc" and text.startswith("load "):
            seen.add(int(text.split()[1]))
            if len(seen) == total:
                last.set()

    await bus.subscribe("rosey.events.message", count)
    await bus.flush()
    try:
        batch = max(1, rate // 100)  # every 10 ms
        started = time.perf_counter()
        for i in range(0, total, batch):
            lines = b"".join(
                f"PRIVMSG {CHANNEL_ROSEY} :load {n}\r\n".encode() for n in range(i, min(total, i + batch))
            )
            await user.connection.send(lines)
            delay = started + (i + batch) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        sent_in = time.perf_counter() - started
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(last.wait(), 30)
        received_in = time.perf_counter() - started
    finally:
        await bus.disconnect()
    return {
        "in_sent": total,
        "in_received": len(seen),
        "in_lost": total - len(seen),
        "in_send_rate": total / sent_in,
        "in_delivered_rate": len(seen) / received_in,
    }


async def measure(*, quick: bool = False) -> dict[str, Any]:
    from tests.adapters.irc_server import HOST, IrcServer, connect_user

    assert HOST == SERVER_HOST
    samples = 60 if quick else 300
    work = Path(tempfile.mkdtemp(prefix="rosey-bench-irc-"))
    server = IrcServer("miniircd", work / "server")
    (work / "server").mkdir()
    server.start()
    rosey = raw = None
    try:
        (work / "rosey").mkdir()
        rosey = await _start_rosey(work / "rosey", server.port)
        raw = await _start_raw(server.port)
        user = await connect_user(server, "bencher", [CHANNEL_ROSEY, CHANNEL_RAW])
        names = [n.lstrip("@+") for m in user.seen if m.command == 353 for n in m.params[-1].split()]
        if "rosey" not in names:
            await user.joined(CHANNEL_ROSEY, "rosey", timeout=30)
        for i in range(10):  # warm up both paths
            await _round_trip(user, CHANNEL_ROSEY, "rosey", f"w{i}")
            await _round_trip(user, CHANNEL_RAW, "rawbot", f"w{i}")
        times: dict[str, list[float]] = {"rosey": [], "raw": []}
        for i in range(samples):
            order = [("rosey", CHANNEL_ROSEY), ("raw", CHANNEL_RAW)]
            for name, channel in order if i % 2 == 0 else reversed(order):
                bot = "rosey" if name == "rosey" else "rawbot"
                times[name].append(await _round_trip(user, channel, bot, f"t{i}x"))
            user.seen.clear()  # keep the matching cheap (expect scans what is kept)
            user._used.clear()
        result: dict[str, Any] = {}
        for name, values in times.items():
            result[f"rt_p50_us_{name}"] = percentile(values, 50) * 1e6
            result[f"rt_p99_us_{name}"] = percentile(values, 99) * 1e6
        result["rt_samples"] = samples
        result.update(await _breakdown(user, work / "rosey" / ".rosey", 30 if quick else 100))
        result.update(await _inbound_rate(user, work / "rosey" / ".rosey", 500, 4 if quick else 10))
        await user.quit()
        return result
    finally:
        for proc in (rosey, raw):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        server.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(quick="--quick" in sys.argv)), indent=1))
