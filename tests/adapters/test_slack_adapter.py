"""The Slack adapter in this process against the Slack stand-in (``slack_server.py``) and a real
nats-server: what it publishes for each kind of Slack event, and what it posts for replies.

The end-to-end tests through the real ``rosey run`` are in ``test_slack_e2e.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.slack_server import APP_TOKEN, BOT_ID, BOT_TOKEN, BOT_USER, SlackStandIn

pytest.importorskip(
    "slack_bolt", reason="the Slack adapter needs slack-bolt (pip install 'rosey-bot[slack]')"
)

from bot.rosey.adapters.slack import SlackAdapter, from_slack_markup, to_slack_text
from bot.rosey.core.chat import OutgoingMessage
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event


class Fast(SlackAdapter):
    reconnect_min = 0.05
    reconnect_max = 0.2
    ping_interval = 0.5


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    server = await SlackStandIn().start()
    server.add_user("UALICE01", "alice")
    server.add_user("UBOSS001", "boss", admin=True)
    server.add_channel("CMAIN001", "main")
    server.add_channel("COTHER01", "other")
    try:
        yield server
    finally:
        await server.close()


class Running:
    def __init__(self, adapter: SlackAdapter, bus: EventBus, events: asyncio.Queue[Event]) -> None:
        self.adapter = adapter
        self.bus = bus
        self.events = events

    async def next_event(self, timeout: float = 10.0) -> Event:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def say(self, **wire: Any) -> None:
        await self.bus.publish("rosey.chat.slack.send", OutgoingMessage(**wire).to_wire())


@pytest.fixture
async def running(slack: SlackStandIn, nats_server: Any, tmp_path: Path) -> AsyncIterator[Running]:
    adapter = Fast(
        name="slack",
        settings={"api_base": slack.api_base, "channels": ["main", "CDIRECT1"], "rate": 100, "burst": 100},
        secrets={"token": BOT_TOKEN, "app_token": APP_TOKEN},
        state_dir=tmp_path,
        nats_url=nats_server.url,
    )
    bus = EventBus(servers=[nats_server.url])
    await bus.connect()
    events: asyncio.Queue[Event] = asyncio.Queue()

    async def collect(event: Event) -> None:
        await events.put(event)

    await bus.subscribe("rosey.adapters.slack.events.>", collect)
    await bus.flush()
    task = asyncio.create_task(adapter.run())
    try:
        await slack.next_hello()
        await asyncio.wait_for(adapter.outbox.connected.wait(), 10)
        yield Running(adapter, bus, events)
    finally:
        adapter.stop()
        await asyncio.wait_for(task, 15)
        await bus.disconnect()


def test_markup_both_ways() -> None:
    text = (
        "hi <@U1> in <#C2|general> <#C3> see <https://x.org/a?b=1&amp;c=2|the docs> <https://y.org>"
        " <!here> &lt;b&gt; &amp;"
    )
    assert from_slack_markup(text, {"U1": "alice"}, {"C3": "random"}) == (
        "hi @alice in #general #random see the docs (https://x.org/a?b=1&c=2) https://y.org @here <b> &"
    )
    assert from_slack_markup("<mailto:a@b.org|a@b.org> <!subteam^S1|@team>") == "a@b.org @team"
    assert to_slack_text("a < b & c > <@U1>") == "a &lt; b &amp; c &gt; &lt;@U1&gt;"


async def test_channel_thread_and_dm_events(running: Running, slack: SlackStandIn) -> None:
    ts = await slack.message("!echo <@UBOSS001> &amp; <#COTHER01>")
    event = await running.next_event()
    assert event.subject == "rosey.adapters.slack.events.message"
    assert event.data["channel"] == "CMAIN001" and event.data["message_id"] == ts
    assert event.data["text"] == "!echo @boss & #other"
    assert event.data["user"]["id"] == "UALICE01" and event.data["user"]["role"] == "user"
    await slack.message("!who", user="UBOSS001", thread_ts="1.000001")
    event = await running.next_event()
    assert event.data["thread_id"] == "1.000001" and event.data["user"]["role"] == "admin"
    await slack.message("!echo dm", channel="DALICE01", channel_type="im")
    event = await running.next_event()
    assert event.subject.endswith(".private_message") and event.data["channel"] == "UALICE01"
    await slack.all_acked()


async def test_mention_prefix_is_one_command(running: Running, slack: SlackStandIn) -> None:
    text = f"<@{BOT_USER}> echo hi"
    ts = await slack.message(text)
    await slack.send_event(
        {"type": "app_mention", "user": "UALICE01", "text": text, "ts": ts, "channel": "CMAIN001"}
    )
    await slack.message(f"<@{BOT_USER}>: !echo again")
    first = await running.next_event()
    second = await running.next_event()
    assert first.data["text"] == "!echo hi" and second.data["text"] == "!echo again"
    await slack.all_acked()


async def test_ignored_events(running: Running, slack: SlackStandIn) -> None:
    await slack.message("!echo mine", user=BOT_USER, bot_id=BOT_ID)
    await slack.message("!echo bot", user="UOTHERBT", bot_id="BOTHER01", subtype="bot_message")
    await slack.message("!echo edited", subtype="message_changed")
    await slack.message("!echo elsewhere", channel="COTHER01")  # not in the allow-list
    await slack.message("!echo by id", channel="CDIRECT1")  # in the allow-list by id
    await slack.message("!echo marker")
    assert (await running.next_event()).data["text"] == "!echo by id"
    assert (await running.next_event()).data["text"] == "!echo marker"
    await slack.all_acked()


async def test_replies_are_escaped_threaded_and_private(running: Running, slack: SlackStandIn) -> None:
    await running.say(text="a < b & c > <@U1>", channel="CMAIN001")
    post = await slack.next_post()
    assert post["channel"] == "CMAIN001" and post["text"] == "a &lt; b &amp; c &gt; &lt;@U1&gt;"
    await running.say(text="in thread", channel="CMAIN001", thread_id="5.000005")
    assert (await slack.next_post())["thread_ts"] == "5.000005"
    await running.say(text="psst", private_to="UALICE01")
    post = await slack.next_post()
    assert post["channel"] == "DALICE01" and "conversations.open" in slack.calls


async def test_long_reply_is_split_whole(running: Running, slack: SlackStandIn) -> None:
    text = " ".join(f"é{i:04d}" for i in range(1500))  # 9,000 characters
    await running.say(text=text, channel="CMAIN001")
    pieces = [await slack.next_post(), await slack.next_post(), await slack.next_post()]
    assert all(len(p["text"]) <= 4000 for p in pieces)
    assert " ".join(p["text"] for p in pieces) == text


async def test_burst_with_429_arrives_whole_and_in_order(running: Running, slack: SlackStandIn) -> None:
    slack.rate_limit_every = 20
    for n in range(50):
        await running.say(text=f"burst {n}", channel="CMAIN001")
    got = [(await slack.next_post(20))["text"] for _ in range(50)]
    assert got == [f"burst {n}" for n in range(50)]
    assert slack.rate_limited == 2


async def test_socket_drops_and_refreshes(running: Running, slack: SlackStandIn) -> None:
    await slack.disconnect()
    assert await slack.next_hello() == 2
    await slack.message("!echo after refresh")
    assert (await running.next_event()).data["text"] == "!echo after refresh"
    await slack.all_acked()
    await slack.drop()
    await running.say(text="while away", channel="CMAIN001")  # the Web API needs no websocket
    assert (await slack.next_post())["text"] == "while away"
    assert await slack.next_hello() == 3
    await slack.message("!echo after drop")
    assert (await running.next_event()).data["text"] == "!echo after drop"
    await slack.all_acked()


async def test_slack_down_and_back_reconnects_and_keeps_the_reply(
    running: Running, slack: SlackStandIn
) -> None:
    await slack.close()  # Slack unreachable: websocket gone, Web API refusing connections
    await running.say(text="said while Slack was down", channel="CMAIN001")
    back = SlackStandIn()
    back.users, back.channels = slack.users, slack.channels
    await back.start(port=slack.port)
    try:
        assert (await back.next_post(20))["text"] == "said while Slack was down"
        await back.next_hello(20)
        await back.message("!echo back")
        assert (await running.next_event()).data["text"] == "!echo back"
        await back.all_acked()
    finally:
        await back.close()


async def test_a_wrong_app_token_ends_the_session_and_is_retried_with_backoff(
    slack: SlackStandIn, nats_server: Any, tmp_path: Path
) -> None:
    adapter = Fast(
        name="slack",
        settings={"api_base": slack.api_base},
        secrets={"token": BOT_TOKEN, "app_token": "xapp-wrong"},
        state_dir=tmp_path,
        nats_url=nats_server.url,
    )
    task = asyncio.create_task(adapter.run())
    try:
        await slack.called("apps.connections.open", times=3)
        assert slack.calls.count("auth.test") >= 3  # each attempt is a whole new session
        assert slack.connections == 0 and not task.done()
    finally:
        adapter.stop()
        await asyncio.wait_for(task, 15)


async def test_invalid_tokens_and_odd_text_never_crash_it(
    slack: SlackStandIn, nats_server: Any, tmp_path: Path
) -> None:
    adapter = Fast(
        name="slack",
        settings={"api_base": slack.api_base},
        secrets={"token": "xoxb-wrong", "app_token": APP_TOKEN},
        state_dir=tmp_path,
        nats_url=nats_server.url,
    )
    task = asyncio.create_task(adapter.run())
    try:
        await slack.called("auth.test", times=3)  # invalid_auth: each session fails, the base retries
        assert slack.connections == 0 and "apps.connections.open" not in slack.calls
        assert not task.done()
    finally:
        adapter.stop()
        await asyncio.wait_for(task, 15)


async def test_control_characters_and_bad_text_are_cleaned(running: Running, slack: SlackStandIn) -> None:
    await slack.message("!echo \x1b[31mred\x00 \ud800 <@UNKNOWN1> <#CNOPE001> <> < &amp")
    event = await running.next_event()
    assert event.data["text"] == "!echo [31mred \ufffd @UNKNOWN1 #CNOPE001  < &amp"
    await slack.send_event({"type": "message", "channel": "CMAIN001"})  # no user, no text
    await slack.send_event({"type": "reaction_added", "user": "UALICE01", "reaction": "+1"})
    await slack.message("!echo still fine")
    assert (await running.next_event()).data["text"] == "!echo still fine"
    await slack.all_acked()


async def test_a_silent_socket_is_replaced(running: Running, slack: SlackStandIn) -> None:
    slack.freeze()  # open but dead: slack_sdk's pings go unanswered
    assert await slack.next_hello() == 2  # it gave up on the silent one and reconnected
    await slack.message("!echo after the silence")
    assert (await running.next_event()).data["text"] == "!echo after the silence"


async def test_a_socket_that_stays_down_starts_a_fresh_session(running: Running, slack: SlackStandIn) -> None:
    """slack_sdk retries the websocket by itself; after socket_grace the base's loop takes over
    with a whole new session (new auth.test), and the old client is closed first: one socket."""
    running.adapter.socket_grace = 1.0
    auth_tests = slack.calls.count("auth.test")
    old_handler = running.adapter._handler
    slack.refuse_sockets = True
    await slack.drop()
    await running.say(text="the Web API still works", channel="CMAIN001")
    assert (await slack.next_post())["text"] == "the Web API still works"
    await slack.called("auth.test", times=auth_tests + 1)  # a new session began
    slack.refuse_sockets = False
    assert await slack.next_hello() == 2
    await slack.message("!echo fresh")
    assert (await running.next_event()).data["text"] == "!echo fresh"
    assert old_handler.client.closed  # the old client stopped its own reconnects ...
    assert running.adapter._handler is not old_handler
    assert slack.open_sockets == 1  # ... so it never connects beside the new one
    await running.say(text="after", channel="CMAIN001")
    assert (await slack.next_post())["text"] == "after"
