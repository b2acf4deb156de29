"""The adapter layer end to end, through the real ``rosey run``: an adapter process supervised,
sandboxed and credentialed like a plugin, its events relayed to the router and to plugins, and
the router's answers going back where each command was said.

The platform is the JSON-lines stand-in of ``line_platform.py``, spoken to over real TCP by a
real adapter process (``fixtures/line_adapter.py``, ``type = "custom"``); the real platforms have
their own modules (``test_irc*``, ``test_matrix*``, ``test_cytube*``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.adapters.line_platform import LINE_ADAPTER, LinePlatform
from tests.adapters.steal_plugin import steal_plugin
from tests.cli.conftest import RunningRosey, rosey, start_run

TOKEN = "line-token-Zq8r2vB"  # the adapter's secret: must reach its process only
OTHER_SECRET = "other-adapter-secret-K3m9"

JOINS_PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface


class Joins(PluginInterface):
    plugin_name = "joins"

    async def on_start(self):
        self.seen = []
        await self.subscribe_to_events(["user_join"])

    async def on_event(self, event):
        self.seen.append(f"{event.data['user']['name']}@{event.data['platform']}:{event.data['channel']}")

    async def handle_command(self, event):
        await self.publish_result({"message": "joins: " + ", ".join(self.seen)}, event.correlation_id)
"""

WHO_PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface


class Who(PluginInterface):
    plugin_name = "who"

    async def handle_command(self, event):
        data = event.data
        user = data["user"]
        text = f"{user['name']} role={user['role']} on {data['platform']} in {data['channel']}"
        if data.get("args") == ["elsewhere"]:
            await self.publish_result({"message": text}, event.correlation_id,
                                      response_channel={"channel": "#elsewhere"})
        elif data.get("args") == ["dm"]:
            await self.publish_result({"message": text}, event.correlation_id,
                                      response_channel={"private": True})
        else:
            await self.publish_result({"message": text}, event.correlation_id)
"""


def _write_project(workdir: Path, platform: LinePlatform, *, extra: str = "") -> None:
    plugins = workdir / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "joins.py").write_text(JOINS_PLUGIN)
    (plugins / "who.py").write_text(WHO_PLUGIN)
    state = workdir / ".rosey"
    markers = [TOKEN[:11], OTHER_SECRET[:21]]  # "line-token-", "other-adapter-secret-"
    (plugins / "steal.py").write_text(steal_plugin(markers, [state, workdir, "/tmp"]))
    echo = Path(__file__).resolve().parents[2] / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
    (plugins / "echo.py").write_text(echo.read_text())
    secrets = workdir / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "other").write_text(OTHER_SECRET)
    os.chmod(secrets / "other", 0o600)
    (workdir / "rosey.toml").write_text(
        textwrap.dedent(
            f"""
            [chat]
            admins = ["line:boss"]

            [plugins.who]
            min_role = "user"

            [adapters.line]
            type = "custom"
            path = "{LINE_ADAPTER}"
            port = {platform.port}
            ports = [{platform.port}]
            token_env = "LINE_TOKEN"

            [adapters.other]
            type = "custom"
            path = "{LINE_ADAPTER}"
            port = {platform.port}
            ports = [{platform.port}]
            token_file = "secrets/other"
            """
        )
        + extra
    )


@pytest.fixture
async def platform() -> AsyncIterator[LinePlatform]:
    server = await LinePlatform().start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def bot(tmp_path: Path, platform: LinePlatform) -> AsyncIterator[RunningRosey]:
    _write_project(tmp_path, platform)
    instance = await start_run(tmp_path, env={"LINE_TOKEN": TOKEN})
    try:
        yield instance
    finally:
        if instance.proc.returncode is None:
            instance.proc.kill()
            await instance.proc.wait()


async def _hellos(platform: LinePlatform) -> dict[str, dict]:
    """The first hello of each of the two adapters (line, other)."""
    hellos = {}
    while len(hellos) < 2:
        hello = await platform.next_hello()
        hellos[hello["hello"]] = hello
    return hellos


async def _said_to(platform: LinePlatform, predicate, timeout: float = 15.0) -> dict:
    while True:
        said = await platform.next_said(timeout)
        if predicate(said):
            return said


async def test_a_command_is_answered_where_it_was_said(bot: RunningRosey, platform: LinePlatform) -> None:
    hellos = await _hellos(platform)
    assert hellos["line"]["token"] == TOKEN  # each adapter got its own credential ...
    assert hellos["other"]["token"] == OTHER_SECRET  # ... from an environment variable or a file
    await platform.event("!echo hi there", channel="#main", message_id="m1")
    said = await platform.next_said()
    assert said["channel"] == "#main" and "hi there" in said["text"]
    assert said["reply_to"] == "m1"  # as a reply to the command's message, where the platform has them


async def test_a_private_command_is_answered_privately(bot: RunningRosey, platform: LinePlatform) -> None:
    await _hellos(platform)
    await platform.event("!who", kind="private_message", channel="", user="bob")
    said = await platform.next_said()
    assert said.get("private_to") == "bob" and "channel" not in said
    assert "bob role=user on line in bob" in said["text"]  # a private message's channel: its sender


async def test_replies_go_to_the_thread_and_the_redirect_the_plugin_asks_for(
    bot: RunningRosey, platform: LinePlatform
) -> None:
    await _hellos(platform)
    await platform.event("!who", channel="#main", thread_id="t7", user="carol", roles=("op",))
    said = await platform.next_said()
    assert said["thread_id"] == "t7" and said["channel"] == "#main"
    assert "carol role=op" in said["text"]
    await platform.event("!who elsewhere", channel="#main")
    said = await platform.next_said()
    assert said["channel"] == "#elsewhere"
    await platform.event("!who dm", channel="#main", user="dave")
    said = await platform.next_said()
    assert said.get("private_to") == "dave"


async def test_long_replies_are_split_and_nothing_is_lost(bot: RunningRosey, platform: LinePlatform) -> None:
    await _hellos(platform)
    words = [f"w{i:03d}" for i in range(400)]  # 1,999 characters
    await platform.event("!echo " + " ".join(words), channel="#main")
    pieces = [await platform.next_said()]
    while " ".join(p["text"] for p in pieces).split()[-1] != words[-1]:
        pieces.append(await platform.next_said())
    assert all(len(p["text"]) <= 100 for p in pieces)  # the adapter's limit
    assert " ".join(p["text"] for p in pieces).split()[-len(words) :] == words


async def test_plugins_receive_platform_events(bot: RunningRosey, platform: LinePlatform) -> None:
    await _hellos(platform)
    await platform.event("", kind="user_join", user="erin", channel="#main")
    await platform.event("!joins", channel="#main")
    said = await platform.next_said()
    assert "erin@line:#main" in said["text"]


async def test_access_rules_and_admin_commands(tmp_path: Path, platform: LinePlatform) -> None:
    _write_project(
        tmp_path,
        platform,
        extra='\n[plugins.echo]\nmin_role = "op"\nchannels = ["#main", "line:#ops"]\n',
    )
    bot = await start_run(tmp_path, env={"LINE_TOKEN": TOKEN})
    try:
        await _hellos(platform)
        await platform.event("!echo hi", channel="#main", user="frank")
        assert "needs the op role" in (await platform.next_said())["text"]
        await platform.event("!echo hi", channel="#random", user="gina", roles=("op",))
        assert "not available in #random" in (await platform.next_said())["text"]
        await platform.event("!echo hi", channel="#ops", user="gina", roles=("op",))
        assert "hi" in (await platform.next_said())["text"]
        await platform.event("!rosey status", channel="#main", user="frank", roles=("admin",))
        assert "for the bot's admins only" in (await platform.next_said())["text"]
        await platform.event("!rosey status", channel="#main", user="boss")
        text = (await platform.next_said())["text"]
        while "other (adapter)" not in text:  # the summary comes in pieces of the adapter's size
            text += " " + (await platform.next_said())["text"]
        assert "line (adapter) running" in text and "echo (plugin) running" in text
    finally:
        bot.proc.kill()
        await bot.proc.wait()


async def test_a_killed_adapter_is_restarted_and_serves_again(
    bot: RunningRosey, platform: LinePlatform
) -> None:
    hellos = await _hellos(platform)
    status = await bot.status()
    rows = {row["name"]: row for row in status["plugins"]}
    assert rows["line"]["kind"] == "adapter" and rows["echo"]["kind"] == "plugin"
    assert rows["line"]["pid"] == hellos["line"]["pid"]
    os.kill(rows["line"]["pid"], signal.SIGKILL)
    hello = await platform.next_hello()
    assert hello["hello"] == "line" and hello["pid"] != hellos["line"]["pid"]
    await platform.event("!echo back again", channel="#main")
    assert "back again" in (await platform.next_said())["text"]
    # `rosey restart` works for an adapter as for a plugin.
    code, _, err = await rosey("restart", "line", cwd=bot.workdir)
    assert code == 0, err
    assert (await platform.next_hello())["hello"] == "line"


async def test_a_hung_adapter_is_killed_and_restarted_while_the_other_platform_answers(
    bot: RunningRosey, platform: LinePlatform
) -> None:
    hellos = await _hellos(platform)
    await platform.order("hang")  # its event loop is stuck from now on
    for n in range(3):  # the other platform keeps answering meanwhile
        await platform.event(f"!echo other {n}", channel="#main", adapter="other")
        said = await platform.next_said()
        assert f"other {n}" in said["text"]
    hello = await platform.next_hello(timeout=30)  # the watchdog's missed pings kill it; restarted
    assert hello["hello"] == "line" and hello["pid"] != hellos["line"]["pid"]
    rows = {row["name"]: row for row in (await bot.status())["plugins"]}
    assert "liveness" in (rows["line"]["last_exit"] or ""), rows["line"]
    await platform.event("!echo line again", channel="#main")
    assert "line again" in (await platform.next_said())["text"]


async def test_a_dropped_platform_connection_reconnects(bot: RunningRosey, platform: LinePlatform) -> None:
    await _hellos(platform)
    platform.drop()
    reconnected = {(await platform.next_hello())["hello"], (await platform.next_hello())["hello"]}
    assert reconnected == {"line", "other"}
    await platform.event("!echo still here", channel="#main")
    assert "still here" in (await platform.next_said())["text"]


async def test_secrets_stay_out_of_status_logs_and_plugins(bot: RunningRosey, platform: LinePlatform) -> None:
    await _hellos(platform)
    await platform.event("!steal", channel="#main")
    stolen = (await platform.next_said())["text"]
    assert stolen.startswith("scanned ") and "hits []" in stolen, stolen
    assert TOKEN not in stolen and OTHER_SECRET not in stolen
    code, out, _ = await rosey("status", "--json", cwd=bot.workdir)
    assert code == 0 and TOKEN not in out and OTHER_SECRET not in out
    for name in ("line", "other", "steal"):
        code, out, err = await rosey("logs", name, cwd=bot.workdir)
        assert TOKEN not in out + err and OTHER_SECRET not in out + err
    bot.proc.send_signal(signal.SIGTERM)
    await bot.proc.wait()
    log = (bot.workdir / "rosey-run.log").read_text()
    assert TOKEN not in log and OTHER_SECRET not in log


async def test_an_adapter_reaches_nothing_but_its_own(bot: RunningRosey, platform: LinePlatform) -> None:
    """A compromised platform library in the `line` adapter: what can it get out?"""
    await _hellos(platform)
    state = bot.workdir / ".rosey"
    canary = state / "data" / "echo" / "canary.txt"
    canary.parent.mkdir(parents=True, exist_ok=True)
    canary.write_text("plugin-data-canary")
    # Another adapter's credential file, a plugin's data, the state dir (core's credentials).
    for path in (bot.workdir / "secrets" / "other", canary, state / "runtime.json"):
        result = await platform.probe("read", str(path))
        assert result.startswith("DENIED"), (path, result)
    environ = await platform.probe("environ")
    assert TOKEN not in environ  # taken out of its environment once read ...
    assert OTHER_SECRET not in environ  # ... and the other adapter's was never there
    # It may not speak for the core or another platform: a forged chat event gets no answer.
    await platform.probe("publish", "rosey.events.message")
    await platform.probe("publish", "rosey.adapters.other.events.message")
    await platform.event("!echo marker", channel="#main")
    said = await platform.next_said()
    assert "marker" in said["text"]  # the first answer is to the marker, not to "!echo forged"
    after = await bot.status()
    rows = {row["name"]: row for row in after["plugins"]}
    assert rows["line"].get("denied_by_nats", 0) >= 2, rows["line"]  # the server refused both
    # TCP only to NATS and its platform's port: a listener on another port stays out of reach.
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    try:
        port = listener.sockets[0].getsockname()[1]
        assert (await platform.probe("connect", f"127.0.0.1:{platform.port}")) == "CONNECTED"
        result = await platform.probe("connect", f"127.0.0.1:{port}")
        assert result.startswith("DENIED"), result
    finally:
        listener.close()


def test_status_table_has_a_kind_column() -> None:
    from bot.rosey.supervision.status import PluginStatus

    assert "kind" in PluginStatus.COLUMNS
