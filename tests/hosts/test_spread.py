"""One plugin's replicas spread over two hosts (s-spread, issue 16): a hub (`rosey run`) and hosts b
and c (`rosey host`), each with its own nats-server on loopback, the plugin listed for both.

Under ~200 commands/s through the hub's chat path, host b's `rosey host` process is killed with
SIGKILL: every command gets an answer well before the command timeout: the ones host b held the
crash reply, all others the plugin's answer (from host c); the plugin is never "unreachable" while
host c carries it, and only when both hosts are lost.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from tests.cli.conftest import rosey, start_run
from tests.hosts.conftest import DISABLED_IRC, Cluster, Host, stop_cluster

pytestmark = pytest.mark.timeout(150)

FIXTURES = Path(__file__).parent / "fixtures"
PLUGIN = "spread_echo"

HUB_TOML = f"""\
[rosey]
command_timeout = 30.0   # a command that waited for its timeout would outlive the test's bound

[hub]
leaf_listen = "127.0.0.1:0"
heartbeat_timeout = 1.0

[hosts.b]
plugins = ["{PLUGIN}"]

[hosts.c]
plugins = ["{PLUGIN}"]

[web]
enabled = false

{DISABLED_IRC}"""


def host_toml(name: str, leaf_url: str, replicas: int, plugin_file: str = "spread_echo.py") -> str:
    return f"""\
[rosey]
entry_points = false

[host]
name = "{name}"
hub = "{leaf_url}"
credentials = "{name}.credentials"
heartbeat_interval = 0.2

[plugins.{PLUGIN}]
path = "{FIXTURES / plugin_file}"
replicas = {replicas}
"""


class Spread:
    """The hub, hosts b and c, and the hub's chat seen from the test (as the IRC adapter)."""

    def __init__(self, cluster: Cluster, other: Host) -> None:
        self.cluster = cluster
        self.b = cluster.host
        self.c = other
        self.replies: dict[str, dict[str, Any]] = {}
        self.answered = asyncio.Event()
        self.sent = 0

    async def listen(self) -> EventBus:
        bus = await self.cluster.hub_bus()

        async def on_reply(event: Event) -> None:
            self.replies[str(event.data.get("reply_to"))] = dict(event.data, at=time.monotonic())
            self.answered.set()

        await bus.subscribe("rosey.chat.irc.send", on_reply)
        await bus.flush()
        return bus

    async def say(self, text: str) -> str:
        """One chat line; returns its message id (the reply names it)."""
        self.sent += 1
        mid = f"m{self.sent}"
        line = {"channel": "#rosey", "user": {"id": "op", "name": "op"}, "text": text, "message_id": mid}
        await (await self.cluster.hub_bus()).publish("rosey.adapters.irc.events.message", line, "test")
        return mid

    def start_load(self) -> Callable[[], Awaitable[None]]:
        """Send ``!spread_echo work`` through the hub's chat path, ~200 a second (paced: the load,
        not a wait), until the returned function is awaited."""
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                await self.say(f"!{PLUGIN} work")
                await asyncio.sleep(0.005)

        sender = asyncio.create_task(load())

        async def stop_load() -> None:
            stop.set()
            await sender

        return stop_load

    async def ask(self, text: str, timeout: float = 15.0) -> dict[str, Any]:
        mid = await self.say(text)
        await self.until(lambda: mid in self.replies, timeout)
        return self.replies[mid]

    async def until(self, predicate: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.answered.clear()
                await self.answered.wait()

    async def wait_rows(self, want: Counter[str], timeout: float = 20.0) -> list[dict[str, Any]]:
        """Until the hub's status has ``want`` (host label -> running rows)."""

        def as_wanted(status: dict[str, Any]) -> list[dict[str, Any]] | None:
            rows = [r for r in status["plugins"] if r["name"].split("#")[0] == PLUGIN]
            seen = Counter(r["host"] for r in rows if r["state"] == "running" or "lost" in r["host"])
            return rows if seen == want else None

        return await self.cluster.until_status(as_wanted, timeout)


async def start_spread(
    tmp_path: Path, launcher: str | None = None, plugin_file: str = "spread_echo.py"
) -> Spread:
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    (hub_dir / "rosey.toml").write_text(HUB_TOML)
    hub = await start_run(hub_dir)
    state = hub_dir / ".rosey" / "hosts"
    leaf_url = (state / "leaf_url").read_text().strip()
    hosts = []
    try:
        for name, replicas in (("b", 2), ("c", 1)):
            workdir = tmp_path / name
            workdir.mkdir()
            shutil.copy(state / f"{name}.credentials", workdir / f"{name}.credentials")
            (workdir / f"{name}.credentials").chmod(0o600)
            (workdir / "rosey.toml").write_text(host_toml(name, leaf_url, replicas, plugin_file))
            host = Host(workdir, launcher, name=name)
            await host.start()
            hosts.append(host)
    except BaseException:
        for host in hosts:
            await host.kill()
        hub.proc.kill()
        await hub.proc.wait()
        raise
    spread = Spread(Cluster(hub, hosts[0]), hosts[1])
    await spread.listen()
    return spread


async def stop_spread(spread: Spread) -> None:
    if spread.c.proc is not None and spread.c.proc.returncode is None:
        spread.c.proc.terminate()
        await spread.c.proc.wait()
    await stop_cluster(spread.cluster)


@pytest.mark.parametrize("launcher", ["zygote", "spawn"])
async def test_a_plugin_spread_over_two_hosts_survives_losing_one_under_load(
    tmp_path: Path, launcher: str
) -> None:
    spread = await start_spread(tmp_path, launcher)
    try:
        # One row per replica, each with its host: two on b, one on c.
        rows = await spread.wait_rows(Counter({"b": 2, "c": 1}))
        pid_host = {r["pid"]: r["host"] for r in rows}
        # `rosey send` from the hub's CLI reaches it too (its own inbox, which both hosts may answer).
        code, out, err = await rosey("send", PLUGIN, "hi", cwd=spread.cluster.hub.workdir)
        assert code == 0 and "spread" in out, err

        # ~200 commands/s; both hosts answer some (NATS spreads the group over the leaf connections).
        stop_load = spread.start_load()

        def answered_by() -> set[str]:
            hosts = set()
            for reply in list(spread.replies.values()):
                words = str(reply.get("text", "")).split()
                if len(words) > 1 and words[0] == "spread" and words[1].isdigit():
                    hosts.add(pid_host.get(int(words[1]), "?"))
            return hosts

        await spread.until(lambda: answered_by() >= {"b", "c"}, 20)
        await spread.b.kill()
        killed_at, sent_at_kill = time.monotonic(), spread.sent
        await spread.wait_rows(Counter({"b (lost)": 2, "c": 1}))
        # Go on for a while after the hub saw it lost: these are all host c's.
        mark = spread.sent
        await spread.until(lambda: len([m for m in spread.replies if int(m[1:]) > mark]) >= 100, 20)
        await stop_load()
        # Every command gets its answer, none waits for the 30 s command timeout.
        await spread.until(lambda: len(spread.replies) >= spread.sent, 20)
        kinds = Counter(r["kind"] for r in spread.replies.values())
        print("outcomes", dict(kinds), "sent", spread.sent)
        odd = [r.get("text") for r in spread.replies.values() if r["kind"] not in ("result", "crashed")]
        assert set(kinds) <= {"result", "crashed"}, (kinds, odd)
        crashed = [(int(m[1:]), r) for m, r in spread.replies.items() if r["kind"] == "crashed"]
        for number, reply in crashed:
            assert number <= sent_at_kill + 20, (number, sent_at_kill)  # sent before (or as) b died
            assert "its host 'b' became unreachable" in reply["text"] or "crashed" in reply["text"]
            assert reply["at"] - killed_at < 10  # at once (after the loss is seen), not at the timeout
        after = [r for m, r in spread.replies.items() if int(m[1:]) > sent_at_kill + 20]
        assert after and all(r["kind"] == "result" for r in after)
        assert kinds["result"] > 10 * max(1, kinds["crashed"])

        # Host c still carries it: not "unreachable". Then c goes too: now it is.
        assert (await spread.ask(f"!{PLUGIN} still"))["kind"] == "result"
        await spread.c.kill()
        await spread.wait_rows(Counter({"b (lost)": 2, "c (lost)": 1}))
        reply = await spread.ask(f"!{PLUGIN} anyone")
        assert "is on hosts 'b', 'c', which are unreachable" in reply["text"], reply
    finally:
        await stop_spread(spread)


async def test_an_idempotent_plugins_commands_on_a_lost_host_are_answered_by_the_other(
    tmp_path: Path,
) -> None:
    """``idempotent = True``: the commands that were on host b when its `rosey host` was killed are
    sent once more, to host c (the survivors' barrier answers say the plugin is idempotent), so
    every command under ~200/s gets the plugin's answer."""
    spread = await start_spread(tmp_path, plugin_file="spread_echo_idempotent.py")
    try:
        await spread.wait_rows(Counter({"b": 2, "c": 1}))
        stop_load = spread.start_load()
        await spread.until(lambda: len(spread.replies) >= 40, 20)
        await spread.b.kill()
        await spread.wait_rows(Counter({"b (lost)": 2, "c": 1}))
        mark = spread.sent
        await spread.until(lambda: len([m for m in spread.replies if int(m[1:]) > mark]) >= 50, 20)
        await stop_load()
        await spread.until(lambda: len(spread.replies) >= spread.sent, 20)
        kinds = Counter(r["kind"] for r in spread.replies.values())
        odd = [r.get("text") for r in spread.replies.values() if r["kind"] != "result"]
        assert set(kinds) == {"result"}, (kinds, odd)
    finally:
        await stop_spread(spread)


@pytest.mark.parametrize("launcher", ["zygote", "spawn"])
async def test_commands_a_killed_replica_on_a_host_never_read_get_the_crash_reply_at_once(
    tmp_path: Path, launcher: str
) -> None:
    """One replica on host b is stopped (SIGSTOP: NATS keeps handing it commands, which wait unread
    in its socket) while ~200 commands/s flow through the hub, then killed (SIGKILL). Its ledger
    names none of those unread commands; the hub's barrier asks hosts b and c which ones their
    live replicas hold, and ends the others with the crash reply at once. Before, they met the
    30 s command timeout (the test's bound is 20 s)."""
    spread = await start_spread(tmp_path, launcher)
    try:
        rows = await spread.wait_rows(Counter({"b": 2, "c": 1}))
        victim = next(r["pid"] for r in rows if r["host"] == "b")
        stop_load = spread.start_load()
        await spread.until(lambda: len(spread.replies) >= 20, 20)
        os.kill(victim, signal.SIGSTOP)
        stopped_at = len(spread.replies)
        # While it is stopped the others answer on; NATS hands it its share meanwhile, unread.
        await spread.until(lambda: len(spread.replies) >= stopped_at + 60, 20)
        os.kill(victim, signal.SIGKILL)
        killed_at, sent_at_kill = time.monotonic(), spread.sent
        await spread.until(lambda: len(spread.replies) >= sent_at_kill + 60, 20)
        await stop_load()
        await spread.until(lambda: len(spread.replies) >= spread.sent, 20)  # none waits for the timeout
        kinds = Counter(r["kind"] for r in spread.replies.values())
        odd = [r.get("text") for r in spread.replies.values() if r["kind"] not in ("result", "crashed")]
        assert set(kinds) <= {"result", "crashed"}, (kinds, odd)
        crashed = [r for r in spread.replies.values() if r["kind"] == "crashed"]
        assert crashed, kinds  # the stopped replica had its share of the commands sent meanwhile
        assert all("crashed while handling your command (killed by SIGKILL)" in r["text"] for r in crashed)
        assert all(r["at"] - killed_at < 10 for r in crashed)
        assert all(r["kind"] == "result" for m, r in spread.replies.items() if int(m[1:]) > sent_at_kill + 20)
    finally:
        await stop_spread(spread)


async def test_on_the_hub_too_the_hubs_replica_takes_every_command_and_the_host_takes_over(
    tmp_path: Path,
) -> None:
    """``[hub] also_runs``: NATS gives a queue group's messages to members on the hub's own server
    first, so the host's replica is a standby: it serves once the hub's is stopped, and the plugin
    is not "unavailable" meanwhile."""
    hub_dir, host_dir = tmp_path / "hub", tmp_path / "b"
    hub_dir.mkdir()
    host_dir.mkdir()
    text = HUB_TOML.replace("[hub]\n", f'[hub]\nalso_runs = ["{PLUGIN}"]\n')
    text = text.replace(f'[hosts.c]\nplugins = ["{PLUGIN}"]\n', "")
    text += f'\n[plugins.{PLUGIN}]\npath = "{FIXTURES / "spread_echo.py"}"\n'
    (hub_dir / "rosey.toml").write_text(text)
    hub = await start_run(hub_dir)
    state = hub_dir / ".rosey" / "hosts"
    shutil.copy(state / "b.credentials", host_dir / "b.credentials")
    (host_dir / "b.credentials").chmod(0o600)
    (host_dir / "rosey.toml").write_text(host_toml("b", (state / "leaf_url").read_text().strip(), 1))
    host = Host(host_dir, name="b")
    await host.start()
    spread = Spread(Cluster(hub, host), host)
    try:
        await spread.listen()
        rows = await spread.wait_rows(Counter({"hub": 1, "b": 1}))
        pids = {r["host"]: r["pid"] for r in rows}

        async def answered_by(n: int) -> Counter[int]:
            got: Counter[int] = Counter()
            for _ in range(n):
                reply = await spread.ask(f"!{PLUGIN} x")
                assert reply["kind"] == "result", reply
                got[int(str(reply["text"]).split()[1])] += 1
            return got

        assert await answered_by(20) == Counter({pids["hub"]: 20})  # local members first
        code, _, err = await rosey("stop", PLUGIN, cwd=hub_dir)  # the hub's own replica
        assert code == 0, err
        assert await answered_by(20) == Counter({pids["b"]: 20})
        code, _, err = await rosey("start", PLUGIN, cwd=hub_dir)
        assert code == 0, err
        rows = await spread.wait_rows(Counter({"hub": 1, "b": 1}))
        again = next(r["pid"] for r in rows if r["host"] == "hub")
        assert again != pids["hub"] and await answered_by(5) == Counter({again: 5})
    finally:
        await stop_cluster(spread.cluster)


async def test_only_the_hosts_carrying_a_spread_plugin_may_answer_into_its_inbox(tmp_path: Path) -> None:
    """The hub grants ``_INBOX.rosey_spread_<p>`` to the hosts that carry ``p`` and to no other: a
    host d (another plugin only) speaking the leaf protocol itself is refused by the hub's server
    and nothing reaches the hub; host b's identical message is delivered."""
    import json

    from bot.rosey.hosts.spread import spread_inbox_prefix
    from tests.hosts.test_hosts import _as_raw_leaf

    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    (hub_dir / "rosey.toml").write_text(HUB_TOML + '\n[hosts.d]\nplugins = ["other"]\n')
    hub = await start_run(hub_dir)
    cluster = Cluster(hub, Host(tmp_path))
    try:
        bus = await cluster.hub_bus()
        seen: list[str] = []

        async def record(event: Event) -> None:
            seen.append(event.source)

        subject = f"{spread_inbox_prefix(PLUGIN)}.forged.1"
        await bus.subscribe(f"{spread_inbox_prefix(PLUGIN)}.>", record)
        await bus.flush()
        state = hub_dir / ".rosey" / "hosts"
        leaf_url = (state / "leaf_url").read_text().strip()
        async with asyncio.timeout(30):
            for host in ("d", "b"):
                creds = json.loads((state / f"{host}.credentials").read_text())
                payload = Event(subject=subject, data={"message": "forged"}, source=f"leaf-{host}").to_bytes()
                answer = await _as_raw_leaf(leaf_url, creds, subject, payload)
                await bus.flush()
                if host == "d":
                    assert b"Permissions Violation" in answer and seen == [], (answer, seen)
                else:
                    assert answer == b"PONG\r\n" and seen == ["leaf-b"], (answer, seen)
    finally:
        await stop_cluster(cluster)
