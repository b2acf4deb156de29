"""The Slack adapter end to end, through the real ``rosey run``: a ``type = "slack"`` adapter
process (supervised, sandboxed, credentialed by the host) connected to the Slack stand-in of
``slack_server.py`` over real HTTP and a real Socket Mode websocket on loopback, its events going
through the core's relay and the router to real plugin processes, and the answers coming back
as ``chat.postMessage`` calls the stand-in records.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.slack_server import APP_TOKEN, BOT_ID, BOT_TOKEN, BOT_USER, SlackStandIn
from tests.cli.conftest import RunningRosey, rosey, start_run

pytest.importorskip(
    "slack_bolt", reason="the Slack adapter needs slack-bolt (pip install 'rosey-bot[slack]')"
)

WHO_PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface


class Who(PluginInterface):
    plugin_name = "who"

    async def handle_command(self, event):
        data = event.data
        user = data["user"]
        text = f"{user['name']} ({user['id']}) role={user['role']} in {data['channel']}"
        text += f" private={data['private']}"
        await self.publish_result({"message": text}, event.correlation_id)
"""

#: A hostile plugin: everything it can read, searched for anything shaped like a Slack token.
STEAL_PLUGIN = """
import glob
import os
import re

from bot.rosey.plugins.plugin_interface import PluginInterface

SHAPE = re.compile(r"xox[a-z]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+")


class Steal(PluginInterface):
    plugin_name = "steal"

    async def handle_command(self, event):
        found, sources = set(), 0
        texts = [k + "=" + v for k, v in os.environ.items()]
        paths = glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline")
        for root in ("STATE", "WORKDIR", "/tmp"):
            paths += glob.glob(root + "/**/*", recursive=True)
        for path in paths:
            try:
                with open(path, "rb") as stream:
                    texts.append(stream.read(1_000_000).decode(errors="replace"))
            except OSError:
                continue
        for text in texts:
            sources += 1
            found.update(SHAPE.findall(text))
        message = f"read {sources} sources; found {sorted(found)}"
        await self.publish_result({"message": message}, event.correlation_id)
"""

#: A compromised library inside an adapter process, run under the adapter sandbox: it tries to
#: read what is not its own and to reach a port it was not granted, and posts what it got.
PROBE_ADAPTER = """
import asyncio
import errno
import json
import os

from bot.rosey.adapters.slack import SlackAdapter


class ProbeSlack(SlackAdapter):
    async def run_session(self):
        from slack_sdk.web.async_client import AsyncWebClient

        results = {}
        for path in self.settings["probe_paths"]:
            try:
                with open(path, errors="replace") as stream:
                    results[path] = "READ:" + stream.read()
            except OSError as exc:
                results[path] = "DENIED:" + errno.errorcode.get(exc.errno or 0, str(exc))
        host, _, port = self.settings["probe_connect"].rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
            writer.close()
            results["connect"] = "CONNECTED"
        except (OSError, TimeoutError) as exc:
            results["connect"] = "DENIED:" + errno.errorcode.get(getattr(exc, "errno", 0) or 0, repr(exc))
        results["environ"] = json.dumps(dict(os.environ))
        web = AsyncWebClient(token=self.secret("token"), base_url=self.settings["api_base"])
        await web.chat_postMessage(channel="CPROBE01", text=json.dumps(results))
        self.set_connected(True)
        await asyncio.Event().wait()
"""


def _write_project(workdir: Path, slack: SlackStandIn, *, extra: str = "", rate: str = "") -> None:
    plugins = workdir / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "who.py").write_text(WHO_PLUGIN)
    (plugins / "steal.py").write_text(
        STEAL_PLUGIN.replace("STATE", str(workdir / ".rosey")).replace("WORKDIR", str(workdir))
    )
    echo = Path(__file__).resolve().parents[2] / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
    (plugins / "echo.py").write_text(echo.read_text())
    secrets = workdir / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "slack-app").write_text(APP_TOKEN + "\n")
    os.chmod(secrets / "slack-app", 0o600)
    (workdir / "rosey.toml").write_text(
        textwrap.dedent(
            f"""
            [chat]
            admins = ["slack:UBOSS001"]

            [adapters.slack]
            type = "slack"
            api_base = "{slack.api_base}"
            channels = ["main", "CTHREAD1"]
            token_env = "SLACK_BOT_TOKEN"
            app_token_file = "secrets/slack-app"
            reconnect_min = 0.2
            reconnect_max = 1
            {rate}
            """
        )
        + extra
    )


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    server = await SlackStandIn().start()
    server.add_user("UALICE01", "alice")
    server.add_user("UBOSS001", "boss", admin=True)
    server.add_channel("CMAIN001", "main")
    server.add_channel("CTHREAD1", "threads")
    server.add_channel("COTHER01", "other")
    try:
        yield server
    finally:
        await server.close()


async def _start(workdir: Path, slack: SlackStandIn, **project: Any) -> RunningRosey:
    _write_project(workdir, slack, **project)
    bot = await start_run(workdir, env={"SLACK_BOT_TOKEN": BOT_TOKEN})
    try:
        await slack.next_hello()  # the adapter's Socket Mode connection is up
    except BaseException:
        bot.proc.kill()
        await bot.proc.wait()
        raise
    return bot


@pytest.fixture
async def bot(tmp_path: Path, slack: SlackStandIn) -> AsyncIterator[RunningRosey]:
    instance = await _start(tmp_path, slack)
    try:
        yield instance
    finally:
        if instance.proc.returncode is None:
            instance.proc.kill()
            await instance.proc.wait()


async def test_commands_are_answered_in_the_channel_thread_and_dm(
    bot: RunningRosey, slack: SlackStandIn
) -> None:
    await slack.message("!echo hi there")
    post = await slack.next_post()
    assert post["channel"] == "CMAIN001" and "hi there" in post["text"] and post["thread_ts"] is None
    parent = await slack.message("!who", channel="CTHREAD1", thread_ts="1700000000.000100")
    post = await slack.next_post()
    assert post["channel"] == "CTHREAD1" and post["thread_ts"] == "1700000000.000100", post
    assert "alice (UALICE01) role=user in CTHREAD1" in post["text"]
    assert parent != post["thread_ts"]
    await slack.message("!who", user="UBOSS001", channel="DBOSS001", channel_type="im")
    post = await slack.next_post()
    assert post["channel"] == "DBOSS001"  # the DM, found with conversations.open
    assert "boss (UBOSS001) role=admin in UBOSS001 private=True" in post["text"]
    await slack.all_acked()


async def test_a_mention_is_a_prefix_and_answered_once(bot: RunningRosey, slack: SlackStandIn) -> None:
    text = f"<@{BOT_USER}> echo hello via mention"
    ts = await slack.message(text)  # Slack sends both a message event ...
    await slack.send_event(  # ... and an app_mention event for the same message
        {"type": "app_mention", "user": "UALICE01", "text": text, "ts": ts, "channel": "CMAIN001"}
    )
    await slack.message("!echo marker")
    assert "hello via mention" in (await slack.next_post())["text"]
    assert "marker" in (await slack.next_post())["text"]  # not a second answer to the mention
    await slack.all_acked()


async def test_markup_is_converted_both_ways(bot: RunningRosey, slack: SlackStandIn) -> None:
    await slack.message(
        "!echo hi <@UBOSS001> in <#COTHER01|other> see <https://x.org/a?b=1&amp;c=2|docs>"
        " a &lt; b &amp;&amp; c &gt; d"
    )
    post = await slack.next_post()
    # The plugin saw "hi @boss in #other see docs (https://x.org/a?b=1&c=2) a < b && c > d";
    # what it said was escaped so that Slack shows it as written.
    assert post["text"].endswith(
        "hi @boss in #other see docs (https://x.org/a?b=1&amp;c=2) a &lt; b &amp;&amp; c &gt; d"
    ), post


async def test_own_and_other_bots_messages_and_edits_are_ignored(
    bot: RunningRosey, slack: SlackStandIn
) -> None:
    await slack.message("!echo mine", user=BOT_USER, bot_id=BOT_ID)
    await slack.message("!echo from a bot", user="UOTHERBT", bot_id="BOTHER01", subtype="bot_message")
    await slack.message("!echo from an app", user="UAPP0001", bot_id="BAPP0001", bot_profile={"name": "app"})
    await slack.message(
        "!echo edited", subtype="message_changed", message={"text": "!echo edited", "user": "UALICE01"}
    )
    await slack.message("!echo elsewhere", channel="COTHER01")  # not in the allow-list
    await slack.message("!echo marker")
    post = await slack.next_post()
    assert "marker" in post["text"], post  # the first answer is the marker's
    await slack.all_acked()  # every envelope acknowledged, ignored or not
    assert len(slack.posted) == 1


async def test_websocket_drops_lose_no_reply(bot: RunningRosey, slack: SlackStandIn) -> None:
    await slack.message("!echo before the drop")
    await slack.all_acked()  # bolt acks on receipt, before the command runs ...
    await slack.drop()  # ... so the reply is produced while the socket is down
    assert "before the drop" in (await slack.next_post())["text"]
    assert await slack.next_hello() == 2  # slack_sdk reconnected by itself
    await slack.message("!echo after the drop")
    assert "after the drop" in (await slack.next_post())["text"]
    await slack.disconnect()  # Slack's "refresh_requested"
    assert await slack.next_hello() == 3
    await slack.message("!echo after the refresh")
    assert "after the refresh" in (await slack.next_post())["text"]
    await slack.all_acked()
    # A killed adapter process: restarted by the supervisor, connects afresh, serves again.
    rows = {row["name"]: row for row in (await bot.status())["plugins"]}
    assert rows["slack"]["kind"] == "adapter"
    os.kill(rows["slack"]["pid"], signal.SIGKILL)
    assert await slack.next_hello() == 4
    await slack.message("!echo after the kill")
    assert "after the kill" in (await slack.next_post())["text"]


async def test_a_rate_limited_burst_of_50_arrives_whole(tmp_path: Path, slack: SlackStandIn) -> None:
    bot = await _start(tmp_path, slack, rate="rate = 20\nburst = 3")
    try:
        slack.rate_limit_every = 20  # calls 20 and 40 answer 429 with Retry-After: 1
        for n in range(50):
            await slack.message(f"!echo burst {n:02d}")
        got = [(await slack.next_post(20))["text"] for _ in range(50)]
        # Each command's reply exactly once (the router answers concurrently, so the order of
        # the replies is the order the plugin answered; the outbox's own order is tested in
        # test_slack_adapter.py).
        assert sorted(text.rsplit(" ", 1)[-1] for text in got) == [f"{n:02d}" for n in range(50)]
        assert slack.rate_limited == 2
        await slack.all_acked()
    finally:
        bot.proc.kill()
        await bot.proc.wait()


async def test_the_tokens_stay_with_the_adapter(bot: RunningRosey, slack: SlackStandIn) -> None:
    await slack.message("!steal")
    post = await slack.next_post()
    assert "read " in post["text"] and "found []" in post["text"], post["text"]
    assert BOT_TOKEN not in post["text"] and APP_TOKEN not in post["text"]
    code, out, _ = await rosey("status", "--json", cwd=bot.workdir)
    assert code == 0 and BOT_TOKEN not in out and APP_TOKEN not in out
    for name in ("slack", "steal"):
        code, out, err = await rosey("logs", name, cwd=bot.workdir)
        assert BOT_TOKEN not in out + err and APP_TOKEN not in out + err
    bot.proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(bot.proc.wait(), 20)
    log = (bot.workdir / "rosey-run.log").read_text()
    assert BOT_TOKEN not in log and APP_TOKEN not in log


async def test_an_adapter_sandbox_reaches_nothing_but_its_own(tmp_path: Path, slack: SlackStandIn) -> None:
    """A compromised library in an adapter process (the `probe` adapter, a SlackAdapter
    subclass under the same adapter sandbox) tries the slack adapter's secret file, a plugin's
    data, the core's state and a port it was not granted."""
    state = tmp_path / ".rosey"
    canary = state / "data" / "echo" / "canary.txt"
    canary.parent.mkdir(parents=True)
    canary.write_text("plugin-data-canary")
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "probe.py").write_text(PROBE_ADAPTER)
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    closed_port = listener.sockets[0].getsockname()[1]
    paths = [
        str(tmp_path / "adapters" / "probe.py"),
        str(tmp_path / "secrets" / "slack-app"),  # the slack adapter's app token
        str(canary),  # a plugin's data
        str(tmp_path / "rosey.toml"),
        str(state / "runtime.json"),  # the core's state (its NATS credentials)
    ]
    extra = textwrap.dedent(
        f"""
        [adapters.probe]
        type = "custom"
        path = "adapters/probe.py"
        api_base = "{slack.api_base}"
        ports = [{slack.port}]
        token_env = "SLACK_BOT_TOKEN"
        probe_paths = {json.dumps(paths)}
        probe_connect = "127.0.0.1:{closed_port}"
        """
    )
    bot = await _start(tmp_path, slack, extra=extra)
    try:
        while (post := await slack.next_post())["channel"] != "CPROBE01":
            pass
        results = json.loads(post["text"])
        assert results[paths[0]].startswith("READ:")  # the control: its own module file
        for path in paths[1:]:
            assert await asyncio.to_thread(
                os.path.exists, path
            )  # there, but out of its reach: hidden (its mount
            # namespace holds only what it was granted) or refused (Landlock)
            assert results[path] in ("DENIED:ENOENT", "DENIED:EACCES"), (path, results[path])
        assert results["connect"].startswith("DENIED"), results["connect"]
        assert APP_TOKEN not in results["environ"] and BOT_TOKEN not in results["environ"]
    finally:
        listener.close()
        bot.proc.kill()
        await bot.proc.wait()
