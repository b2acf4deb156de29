"""Rosey on Discord end to end: the real ``rosey run`` supervising a sandboxed ``type = "discord"``
adapter process that talks to the Discord stand-in (``discord_server.py``) over real HTTP and
websockets, through the ``api_base`` setting operators use for Discord-compatible servers.

Each test writes a ``rosey.toml`` and plugins into its own directory, starts ``rosey run`` and
acts as Discord users through the stand-in; every wait is on something arriving (a post, an
IDENTIFY/RESUME, a process exit), with a timeout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.adapters.types import ADAPTER_TYPES
from tests.adapters.discord_server import (
    ADMIN,
    ALICE,
    BOT,
    GENERAL,
    GUILD,
    MANAGER,
    MOD,
    OTHER_BOT,
    OTHER_GENERAL,
    OTHER_GUILD,
    OWNER,
    RANDOM,
    THREAD,
    DiscordStandIn,
)
from tests.adapters.steal_plugin import steal_plugin
from tests.cli.conftest import RunningRosey, rosey, start_run

discord = pytest.importorskip(
    "discord", reason="the Discord adapter needs discord.py (pip install 'rosey-bot[discord]')"
)

TOKEN = "DSCRD.MTk4NjIy.Zn-Cjm1XVW7vRze4b7Cq"  # the bot token: must reach the adapter process only
OTHER_SECRET = "other-adapter-secret-7Hq2"

WHO_PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface


class Who(PluginInterface):
    plugin_name = "who"

    async def handle_command(self, event):
        data = event.data
        user = data["user"]
        text = f"{user['name']} role={user['role']} in {data['channel']} private={data['private']}"
        channel = {"private": True} if data.get("args") == ["dm"] else None
        await self.publish_result({"message": text}, event.correlation_id, response_channel=channel)
"""

# A compromised discord.py in the adapter process: the real DiscordAdapter, plus orders given in
# chat ("PROBE read /path") whose results it posts back to Discord, so the test sees what really
# left the process. Run as `type = "custom"` with `ports = [443, PORT]`: the very grants a
# `type = "discord"` adapter with `api_base` on PORT gets (checked in the test).
PROBE_ADAPTER = """
import asyncio
import json
import os

from bot.rosey.adapters.discord import DiscordAdapter
from bot.rosey.core.chat import OutgoingMessage


class ProbeDiscordAdapter(DiscordAdapter):
    async def handle_message(self, message):
        if not message.content.startswith("PROBE "):
            return await super().handle_message(message)
        _, probe, arg = message.content.split(" ", 2)
        if probe == "read":
            try:
                with open(arg, errors="replace") as stream:
                    result = "READ:" + stream.read()
            except OSError as exc:
                result = f"DENIED:{exc.strerror}"
        elif probe == "environ":
            result = "ENV:" + json.dumps(dict(os.environ))
        else:  # connect host:port
            host, _, port = arg.rpartition(":")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
                writer.close()
                result = "CONNECTED"
            except (OSError, TimeoutError) as exc:
                result = f"DENIED:{getattr(exc, 'strerror', None) or exc!r}"
        await self.deliver(OutgoingMessage(text=result[:1900], channel=str(message.channel.id)))
"""


def _write_project(workdir: Path, standin: DiscordStandIn, *, adapter: str = "", extra: str = "") -> None:
    plugins = workdir / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "who.py").write_text(WHO_PLUGIN)
    state = workdir / ".rosey"
    (plugins / "steal.py").write_text(steal_plugin(["DSCRD"], [state, workdir, "/tmp"]))
    echo = Path(__file__).resolve().parents[2] / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
    (plugins / "echo.py").write_text(echo.read_text())
    secrets = workdir / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "other").write_text(OTHER_SECRET)
    os.chmod(secrets / "other", 0o600)
    (workdir / "rosey.toml").write_text(
        textwrap.dedent(
            f"""
            [plugins.who]
            min_role = "user"

            [adapters.discord]
            {adapter or 'type = "discord"'}
            api_base = "{standin.api_base}"
            token_env = "DISCORD_TOKEN"
            guilds = ["{GUILD}"]
            channels = [{GENERAL}]
            op_roles = ["Moderators"]
            rate = 500
            burst = 100
            reconnect_min = 0.1
            reconnect_max = 1

            [adapters.slack]           # another adapter's credential, in a file
            type = "custom"
            module = "nowhere:Nothing"
            enabled = false
            token_file = "secrets/other"
            """
        )
        + extra
    )


@pytest.fixture
async def standin() -> AsyncIterator[DiscordStandIn]:
    server = await DiscordStandIn(TOKEN).start()
    try:
        yield server
    finally:
        await server.close()


async def _run(
    workdir: Path, standin: DiscordStandIn, *, env: dict[str, str] | None = None, **project: Any
) -> RunningRosey:
    _write_project(workdir, standin, **project)
    bot = await start_run(workdir, env={"DISCORD_TOKEN": TOKEN, **(env or {})})
    try:
        assert await standin.next_ready(timeout=30) == "identified"
    except BaseException:
        bot.proc.kill()
        await bot.proc.wait()
        raise
    return bot


@pytest.fixture
async def bot(tmp_path: Path, standin: DiscordStandIn) -> AsyncIterator[RunningRosey]:
    instance = await _run(tmp_path, standin)
    try:
        yield instance
    finally:
        if instance.proc.returncode is None:
            instance.proc.kill()
            await instance.proc.wait()


async def _post(standin: DiscordStandIn, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while True:
        post = await standin.next_post()
        if predicate(post):
            return post


def _reference(post: dict[str, Any]) -> int | None:
    reference = post["message_reference"]
    return int(reference["message_id"]) if reference else None


@pytest.mark.parametrize("launcher", ["zygote", "spawn"])
async def test_commands_are_answered_where_they_were_said(
    tmp_path: Path, standin: DiscordStandIn, launcher: str
) -> None:
    bot = await _run(tmp_path, standin, env={"ROSEY_LAUNCHER": launcher})
    try:
        said = await standin.say("!echo hi there")  # a guild channel: a reply in the channel
        post = await standin.next_post()
        assert post["channel_id"] == GENERAL and "hi there" in post["content"]
        assert _reference(post) == said
        said = await standin.say("!echo in thread", channel=THREAD)  # a thread: answered in it
        post = await standin.next_post()
        assert post["channel_id"] == THREAD and "in thread" in post["content"] and _reference(post) == said
        await standin.say("!who", guild=None, user=ALICE)  # a DM: answered in the DM
        post = await standin.next_post()
        assert post["channel_id"] == standin.dm_channel(ALICE)
        assert post["content"] == f"alice role=user in {ALICE} private=True"
        for user, role in (
            (OWNER, "admin"),
            (ADMIN, "admin"),
            (MANAGER, "admin"),
            (MOD, "op"),
            (ALICE, "user"),
        ):
            await standin.say("!who", user=user)
            assert f"role={role} in {GENERAL}" in (await standin.next_post())["content"], user
        await standin.say("!who dm", user=MOD)  # the plugin answers privately: a DM is opened
        post = await standin.next_post()
        assert post["channel_id"] == standin.dm_channel(MOD) and "moe role=op" in post["content"]
        assert post["allowed_mentions"]["parse"] == []  # a plugin's text never pings @everyone
    finally:
        bot.proc.kill()
        await bot.proc.wait()


async def test_its_own_other_bots_and_off_list_messages_are_ignored(
    bot: RunningRosey, standin: DiscordStandIn
) -> None:
    await standin.say("!echo from myself", user=BOT)
    await standin.say("!echo from a bot", user=OTHER_BOT)
    await standin.say("!echo from a webhook", webhook=True)
    await standin.say("!echo in random", channel=RANDOM)  # not in `channels`
    await standin.say("!echo elsewhere", guild=OTHER_GUILD, channel=OTHER_GENERAL)  # not in `guilds`
    await standin.say("!echo marker")
    post = await standin.next_post()
    assert "marker" in post["content"], post  # the first answer is to the marker
    assert "Echo #1:" in post["content"]  # and the echo plugin saw nothing before it


async def test_a_long_reply_is_split_at_2000_characters(bot: RunningRosey, standin: DiscordStandIn) -> None:
    words = [f"wörd{i:03d}😀" for i in range(400)]  # 3,599 characters, multi-byte ones among them
    await standin.say("!echo " + " ".join(words))
    pieces = [await standin.next_post()]
    while not pieces[-1]["content"].endswith(words[-1]):
        pieces.append(await standin.next_post())
    assert len(pieces) == 2 and all(len(p["content"]) <= 2000 for p in pieces)
    assert len(pieces[0]["content"]) > 1900  # filled, cut at a space
    assert " ".join(p["content"] for p in pieces).split()[-len(words) :] == words


async def test_a_burst_of_50_replies_through_429s_is_delivered_whole(
    bot: RunningRosey, standin: DiscordStandIn
) -> None:
    standin.reject_posts = 3  # the first sends are refused with 429 + retry_after
    for n in range(50):
        await standin.say(f"!echo b{n:02d}")
    posts = [await standin.next_post() for _ in range(50)]
    echoed = [p["content"].rsplit(" ", 1)[-1] for p in posts]
    assert sorted(echoed) == [f"b{n:02d}" for n in range(50)]  # none lost, none twice
    numbers = [int(p["content"].split("#", 1)[1].split(":", 1)[0]) for p in posts]
    assert numbers == sorted(numbers)  # in the order the echo plugin answered
    assert standin.stats.rate_limited >= 3 and standin.stats.over_limit == 0


async def test_a_dropped_gateway_resumes_without_losing_a_reply(
    bot: RunningRosey, standin: DiscordStandIn
) -> None:
    await standin.say("!echo before")
    assert "before" in (await standin.next_post())["content"]
    standin.hold()
    await standin.drop(abort=True)  # the connection dies; Discord keeps the session
    await standin.say("!echo while away")  # replayed on RESUME
    standin.release()
    assert await standin.next_ready() == "resumed"
    assert "while away" in (await standin.next_post())["content"]
    await standin.drop()  # a close frame (4000) this time
    assert await standin.next_ready() == "resumed"
    await standin.say("!echo after")
    assert "after" in (await standin.next_post())["content"]
    assert standin.stats.identifies == 1 and standin.stats.resumes == 2


async def test_a_killed_adapter_is_restarted_and_answers_again(
    bot: RunningRosey, standin: DiscordStandIn
) -> None:
    rows = {row["name"]: row for row in (await bot.status())["plugins"]}
    assert rows["discord"]["kind"] == "adapter"
    os.kill(rows["discord"]["pid"], signal.SIGKILL)
    assert await standin.next_ready(timeout=30) == "identified"  # a new process, a new session
    await standin.say("!echo back again")
    assert "back again" in (await _post(standin, lambda p: "back again" in p["content"]))["content"]
    rows = {row["name"]: row for row in (await bot.status())["plugins"]}
    assert rows["discord"]["state"] == "running"


async def test_the_token_stays_out_of_plugins_status_and_logs(
    bot: RunningRosey, standin: DiscordStandIn
) -> None:
    await standin.say("!steal")
    text = (await standin.next_post())["content"]
    assert text.startswith("scanned ") and int(text.split()[1].rstrip(";")) > 3, text
    assert TOKEN not in text and "hits []" in text, text
    code, out, _ = await rosey("status", "--json", cwd=bot.workdir)
    assert code == 0 and TOKEN not in out
    for name in ("discord", "steal"):
        code, out, err = await rosey("logs", name, cwd=bot.workdir)
        assert TOKEN not in out + err
    bot.proc.send_signal(signal.SIGTERM)
    await bot.proc.wait()
    assert TOKEN not in (bot.workdir / "rosey-run.log").read_text()


async def test_the_adapter_reaches_nothing_but_its_own(tmp_path: Path, standin: DiscordStandIn) -> None:
    """A compromised discord.py in the adapter process: what can it get out?"""
    probe = tmp_path / "adapters" / "probe_discord.py"
    probe.parent.mkdir()
    probe.write_text(PROBE_ADAPTER)
    grants = ADAPTER_TYPES["discord"].ports({"api_base": standin.api_base})
    assert grants == (443, standin.port)  # what `type = "discord"` opens, and what the probe gets
    adapter = f'type = "custom"\n            path = "{probe}"\n            ports = [443, {standin.port}]'
    bot = await _run(tmp_path, standin, adapter=adapter)
    try:
        state = tmp_path / ".rosey"
        canary = state / "data" / "echo" / "canary.txt"
        canary.parent.mkdir(parents=True, exist_ok=True)
        canary.write_text("plugin-data-canary")
        library = Path(discord.__file__)  # the probe works: the runtime is readable
        await standin.say(f"PROBE read {library}")
        assert (await standin.next_post())["content"].startswith("READ:")
        for path in (tmp_path / "secrets" / "other", canary, state / "runtime.json", tmp_path / "rosey.toml"):
            await standin.say(f"PROBE read {path}")
            result = (await standin.next_post())["content"]
            assert result.startswith("DENIED"), (path, result)
        await standin.say("PROBE environ x")
        environ = (await standin.next_post())["content"]
        assert environ.startswith("ENV:") and TOKEN not in environ and OTHER_SECRET not in environ
        listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        try:
            port = listener.sockets[0].getsockname()[1]
            await standin.say(f"PROBE connect 127.0.0.1:{standin.port}")
            assert (await standin.next_post())["content"] == "CONNECTED"
            await standin.say(f"PROBE connect 127.0.0.1:{port}")
            result = (await standin.next_post())["content"]
            assert result.startswith("DENIED"), result
        finally:
            listener.close()
    finally:
        bot.proc.kill()
        await bot.proc.wait()
