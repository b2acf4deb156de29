"""Rosey on CyTube end to end: the real ``rosey run`` supervising the CyTube adapter as a sandboxed
process, against the fake CyTube server (``cytube_server.py``), with people in the channel as
plain python-socketio clients."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import RunningRosey, rosey, start_run

from .cytube_server import CytubeUser, FakeCytube, cytube_server

pytest.importorskip("socketio", reason="python-socketio is not installed (pip install -e '.[cytube]')")

from bot.rosey.adapters.cytube_text import html_to_text

__all__ = ["cytube_server"]  # the fixture, used by name

PASSWORD = "bot-secret"  # rosey_bot's password on the fake server: it must reach the adapter only
HOSTILE = Path(__file__).resolve().parent / "fixtures" / "hostile_cytube.py"
ECHO = Path(__file__).resolve().parents[2] / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"

SAY_PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface


class Say(PluginInterface):
    plugin_name = "say"

    async def handle_command(self, event):
        await self.publish_result({"message": " ".join(event.data.get("args") or [])}, event.correlation_id)
"""


def _write_project(workdir: Path, server: FakeCytube, channel: str, *, spy: bool = False) -> None:
    plugins = workdir / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "echo.py").write_text(ECHO.read_text())
    (plugins / "say.py").write_text(SAY_PLUGIN)
    secrets = workdir / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "cytube").write_text(PASSWORD)
    os.chmod(secrets / "cytube", 0o600)
    text = f"""
        [adapters.cytube]
        type = "cytube"
        server = "{server.url}"
        channel = "{channel}"
        user = "rosey_bot"
        password_file = "secrets/cytube"
        connect_rate = 5.0   # the fake's connection throttle refills fast (tests); real: 0.1
        reconnect_min = 0.2
        reconnect_max = 2.0
        """
    if spy:
        text += f"""
        [adapters.spy]
        type = "custom"
        path = "{HOSTILE}"
        server = "{server.url}"
        channel = "{channel}"
        user = "spy"
        ports = [{server.port}]
        connect_rate = 5.0
        """
    (workdir / "rosey.toml").write_text(textwrap.dedent(text))


def _logs(bot: RunningRosey) -> str:
    """The end of rosey run's log and of the adapters' logs, for a failure message."""
    parts = []
    for path in [bot.workdir / "rosey-run.log", *sorted((bot.workdir / ".rosey" / "logs").glob("*.log"))]:
        if path.exists():
            parts.append(
                f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-25:])
            )
    return "\n".join(parts)


@pytest.fixture
async def channel_and_bot(
    tmp_path: Path, cytube_server: FakeCytube, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[str, RunningRosey]]:
    channel = f"e2e_{request.node.name[-20:].strip('_')}"
    _write_project(tmp_path, cytube_server, channel, spy="sandbox" in request.node.name)
    bot = await start_run(tmp_path)
    try:
        yield channel, bot
    finally:
        print(_logs(bot))  # pytest shows it when the test failed
        if bot.proc.returncode is None:
            bot.proc.kill()
            await bot.proc.wait()


def _from(name: str) -> Any:
    return lambda d: isinstance(d, dict) and d.get("username") == name and isinstance(d.get("msg"), str)


async def _next_from(person: CytubeUser, name: str, event: str = "chatMsg", timeout: float = 30.0) -> str:
    """The next message from ``name`` that ``person`` had not read yet."""
    read = getattr(person, "_read", {})
    person._read = read  # type: ignore[attr-defined]
    count = read.get((event, name), 0) + 1
    data = await person.wait_for(event, _from(name), count=count, timeout=timeout)
    read[(event, name)] = count
    return html_to_text(data["msg"])


async def _bot_in(person: CytubeUser, name: str = "rosey_bot", count: int = 1) -> None:
    """Wait until ``name`` joined the channel ``count`` times as ``person`` saw it (being in the
    userlist ``person`` got on joining counts as the first)."""

    def joins() -> int:
        listed = any(
            isinstance(u, dict) and u.get("name") == name
            for users in person.seen("userlist")
            if isinstance(users, list)
            for u in users
        )
        added = person.seen("addUser", lambda d: isinstance(d, dict) and d.get("name") == name)
        return int(listed) + len(added)

    await person.wait_until(lambda: joins() >= count, timeout=30)


async def test_commands_in_the_channel_and_in_private_are_answered_there(
    channel_and_bot: tuple[str, RunningRosey], cytube_server: FakeCytube
) -> None:
    channel, _ = channel_and_bot
    async with CytubeUser(cytube_server, channel, "alice", password="alice-pw") as alice:
        await _bot_in(alice)
        await alice.say("!echo hi")
        assert await _next_from(alice, "rosey_bot") == "🔊 Echo #1: hi"
        await alice.pm("rosey_bot", "!echo quietly")
        assert await _next_from(alice, "rosey_bot", "pm") == "🔊 Echo #2: quietly"
        # The bot's own line looks like a command; the server sends it back to the bot, which
        # must not run it: the next thing the bot says answers the marker, not "!echo loop".
        await alice.say("!say !echo loop")
        assert await _next_from(alice, "rosey_bot") == "!echo loop"
        await alice.say("!echo marker")
        assert await _next_from(alice, "rosey_bot") == "🔊 Echo #3: marker"
        assert cytube_server.dropped["length"] == 0


async def test_a_killed_adapter_is_restarted_and_answers_again(
    channel_and_bot: tuple[str, RunningRosey], cytube_server: FakeCytube
) -> None:
    channel, bot = channel_and_bot
    async with CytubeUser(cytube_server, channel, "bob", password="bob-pw") as bob:
        await _bot_in(bob)
        rows = {row["name"]: row for row in (await bot.status())["plugins"]}
        assert rows["cytube"]["kind"] == "adapter"
        os.kill(rows["cytube"]["pid"], signal.SIGKILL)
        await bob.wait_for("userLeave", lambda d: d.get("name") == "rosey_bot", timeout=30)
        await _bot_in(bob, count=2)  # restarted by the supervisor, back in the channel
        await bob.say("!echo again")
        print([(e, d if e != "channelOpts" else "...") for e, d in bob.events])  # shown on failure
        assert (await _next_from(bob, "rosey_bot")).endswith(": again")
        rows2 = {row["name"]: row for row in (await bot.status())["plugins"]}
        assert rows2["cytube"]["pid"] != rows["cytube"]["pid"]
        # `rosey restart cytube` works too.
        code, _, err = await rosey("restart", "cytube", cwd=bot.workdir)
        assert code == 0, err
        await _bot_in(bob, count=3)
        await bob.say("!echo once more")
        assert (await _next_from(bob, "rosey_bot")).endswith(": once more")


async def test_sandbox_an_adapter_reaches_nothing_but_its_own(
    channel_and_bot: tuple[str, RunningRosey], cytube_server: FakeCytube
) -> None:
    """The spy is the CyTube adapter with a compromised library: what can it get out?"""
    channel, bot = channel_and_bot
    state = bot.workdir / ".rosey"
    canary = state / "data" / "echo" / "canary.txt"
    canary.parent.mkdir(parents=True, exist_ok=True)
    canary.write_text("plugin-data-canary")
    async with CytubeUser(cytube_server, channel, "carol") as carol:
        await _bot_in(carol, "spy")
        await _bot_in(carol, "rosey_bot")
        # Its own state directory is readable: the probe works.
        await carol.pm("spy", "probe readown cytube-connect-throttle.json")
        assert (await _next_from(carol, "spy", "pm")).startswith("READ:")
        for path in (
            canary,  # a plugin's data
            bot.workdir / "secrets" / "cytube",  # the other adapter's credential
            state / "adapters" / "cytube" / "cytube-connect-throttle.json",  # its state
            state / "runtime.json",  # the core's
        ):
            await carol.pm("spy", f"probe read {path}")
            answer = await _next_from(carol, "spy", "pm")
            assert answer.startswith("DENIED"), (path, answer)
        await carol.pm("spy", f"probe grepenv {PASSWORD}")
        assert await _next_from(carol, "spy", "pm") == "ABSENT"
        # Meanwhile the real adapter, with its password, works.
        await carol.say("!echo fine")
        assert (await _next_from(carol, "rosey_bot")).endswith(": fine")
    code, out, _ = await rosey("status", "--json", cwd=bot.workdir)
    assert code == 0 and PASSWORD not in out
    for name in ("cytube", "spy"):
        code, out, err = await rosey("logs", name, cwd=bot.workdir)
        assert PASSWORD not in out + err
