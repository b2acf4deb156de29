"""The Discord adapter in this process against the Discord stand-in and a real NATS server.

What the end-to-end module (``test_discord.py``) cannot look at closely: the exact events the
adapter publishes, strict order of 50 replies through 429s, a refused RESUME, refused sends,
odd text, a refused token or intent, and the stand-in going away and coming back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.rosey.core.chat import OutgoingMessage
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.testing import NatsServer
from tests.adapters.discord_server import (
    ADMIN,
    ALICE,
    BOT,
    GENERAL,
    GUILD,
    INTENT_MESSAGE_CONTENT,
    MANAGER,
    MOD,
    OTHER_BOT,
    OTHER_GENERAL,
    OTHER_GUILD,
    OWNER,
    RANDOM,
    READONLY,
    THREAD,
    DiscordStandIn,
)

pytest.importorskip(
    "discord", reason="the Discord adapter needs discord.py (pip install 'rosey-bot[discord]')"
)

from bot.rosey.adapters.discord import DiscordAdapter

TOKEN = "Bot.tok3n-in-process.Xy"


class Harness:
    def __init__(self, standin: DiscordStandIn, adapter: DiscordAdapter, bus: EventBus) -> None:
        self.standin = standin
        self.adapter = adapter
        self.bus = bus
        self.events: asyncio.Queue[Event] = asyncio.Queue()

    async def on_event(self, event: Event) -> None:
        await self.events.put(event)

    async def next_event(self, timeout: float = 10.0) -> Event:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def send(self, **fields: Any) -> None:
        await self.bus.publish("rosey.chat.discord.send", OutgoingMessage(**fields).to_wire(), source="test")


async def _start(
    standin: DiscordStandIn, nats_url: str, settings: dict[str, Any] | None = None, token: str = TOKEN
) -> tuple[DiscordAdapter, asyncio.Task[None]]:
    adapter = DiscordAdapter(
        name="discord",
        settings={"api_base": standin.api_base, "rate": 1000, "burst": 1000, **(settings or {})},
        secrets={"token": token},
        state_dir=".",
        nats_url=nats_url,
    )
    adapter.reconnect_min = 0.05  # type: ignore[misc]
    adapter.reconnect_max = 0.2  # type: ignore[misc]
    return adapter, asyncio.create_task(adapter.run())


@pytest.fixture
async def harness(nats_server: NatsServer) -> AsyncIterator[Harness]:
    standin = await DiscordStandIn(TOKEN).start()
    bus = EventBus(servers=[nats_server.url], name="discord-test")
    await bus.connect()
    adapter, task = await _start(
        standin, nats_server.url, {"guilds": [str(GUILD)], "channels": [GENERAL], "op_roles": ["moderators"]}
    )
    h = Harness(standin, adapter, bus)
    await bus.subscribe("rosey.adapters.discord.events.>", h.on_event)
    await bus.flush()
    try:
        assert await standin.next_ready() == "identified"
        yield h
    finally:
        adapter.stop()
        await asyncio.wait_for(task, 15)
        await bus.disconnect()
        await standin.close()


async def test_messages_roles_threads_and_dms_become_events(harness: Harness) -> None:
    s = harness.standin
    mid = await s.say("!echo hi <b>", user=ALICE)
    event = await harness.next_event()
    assert event.subject == "rosey.adapters.discord.events.message"
    assert event.data["channel"] == str(GENERAL) and event.data["message_id"] == str(mid)
    assert event.data["user"] == {
        "id": str(ALICE),
        "name": "alice",
        "username": "alice",
        "roles": [],
        "role": "user",
    }
    assert event.data["text"] == "!echo hi <b>" and event.data["thread_id"] is None
    for user, role in ((OWNER, "admin"), (ADMIN, "admin"), (MANAGER, "admin"), (MOD, "op")):
        await s.say("!who", user=user)
        assert (await harness.next_event()).data["user"]["role"] == role, user
    await s.say("!who", channel=THREAD)  # a thread of an allowed channel
    event = await harness.next_event()
    assert event.data["channel"] == event.data["thread_id"] == str(THREAD)
    await s.say("!who", guild=None, user=MOD)  # a DM: no role travels with it
    event = await harness.next_event()
    assert event.subject.endswith(".private_message")
    assert event.data["channel"] == str(MOD) and event.data["user"]["role"] == "user"
    reply = await s.say("!who", reply_to=mid)
    assert (await harness.next_event()).data["reply_to"] == str(mid)
    # Never emitted: itself, another bot, a webhook, a system message, off the allow-lists.
    await s.say("!echo self", user=BOT)
    await s.say("!echo bot", user=OTHER_BOT)
    await s.say("!echo hook", webhook=True)
    await s.say("alice pinned a message", message_type=6)
    await s.say("!echo random", channel=RANDOM)
    await s.say("!echo elsewhere", guild=OTHER_GUILD, channel=OTHER_GENERAL)
    await s.say("!echo marker")
    event = await harness.next_event()
    assert event.data["text"] == "!echo marker", event.data
    assert reply


async def test_odd_text_never_breaks_the_session(harness: Harness) -> None:
    s = harness.standin
    await s.say("\x1b[31mred\x00 \ud800 and\u202e é" + "x" * 20000)
    event = await harness.next_event()
    text = event.data["text"]
    assert "\x1b" not in text and "\x00" not in text and "\ud800" not in text
    assert text.startswith("[31mred") and len(text) <= 16000
    await s.say("")  # an empty message (an attachment only): fine
    await s.say("after")
    while (event := await harness.next_event()).data["text"] != "after":
        pass


async def test_replies_go_where_they_belong_split_at_2000_code_points(harness: Harness) -> None:
    s = harness.standin
    await harness.send(text="in general", channel=str(GENERAL), reply_to="123")
    post = await s.next_post()
    assert post["channel_id"] == GENERAL and post["content"] == "in general"
    assert str(post["message_reference"]["message_id"]) == "123"
    assert post["message_reference"]["fail_if_not_exists"] is False
    mentions = post["allowed_mentions"]
    assert mentions["parse"] == [] and mentions.get("replied_user") is True  # no @everyone from a plugin
    await harness.send(text="in the thread", channel=str(THREAD), thread_id=str(THREAD))
    assert (await s.next_post())["channel_id"] == THREAD
    await harness.send(text="privately", private_to=str(ALICE))  # never DMed before: opens one
    post = await s.next_post()
    assert post["channel_id"] == s.dm_channel(ALICE) and post["content"] == "privately"
    long = "é" * 1500 + "😀" * 1500 + "\n" + "z" * 10  # 3,011 code points, 9,011 UTF-8 bytes
    await harness.send(text=long, channel=str(GENERAL))
    first, second = await s.next_post(), await s.next_post()
    assert len(first["content"]) == 2000 and first["content"] + second["content"] == long


async def test_refused_sends_are_dropped_and_the_next_goes_out(harness: Harness) -> None:
    s = harness.standin
    await harness.send(text="nope", channel=str(READONLY))  # 403 Missing Permissions
    await harness.send(text="nope", channel="820000000000099999")  # 404 Unknown Channel
    await harness.send(text="nope", channel="#general")  # not an id
    await harness.send(text="yes", channel=str(GENERAL))
    post = await s.next_post()
    assert post["content"] == "yes" and harness.adapter.outbox.stats.dropped == 3


async def test_a_send_discord_fails_is_tried_again(harness: Harness) -> None:
    s = harness.standin
    s.fail_posts = 1  # a 503: the outbox keeps the message, the adapter lets it try again
    await harness.send(text="second try", channel=str(GENERAL))
    await harness.send(text="then this", channel=str(GENERAL))
    assert [(await s.next_post())["content"] for _ in range(2)] == ["second try", "then this"]
    assert harness.adapter.outbox.stats.dropped == 0


async def test_fifty_replies_through_429s_arrive_all_and_in_order(harness: Harness) -> None:
    s = harness.standin
    s.reject_posts = 3  # the first three attempts are refused whatever the bucket says
    for n in range(50):
        await harness.send(text=f"burst {n:02d}", channel=str(GENERAL))
    got = [(await s.next_post())["content"] for _ in range(50)]
    assert got == [f"burst {n:02d}" for n in range(50)]
    assert s.stats.rate_limited >= 3
    assert s.stats.over_limit == 0  # discord.py waited out every exhausted bucket by itself


async def test_a_dropped_gateway_resumes_and_replays_what_was_missed(harness: Harness) -> None:
    s = harness.standin
    s.hold()
    await s.drop(abort=True)  # a plain TCP close
    await s.say("!echo while away 1")  # the bot is away: kept in the session, replayed on RESUME
    await s.say("!echo while away 2")
    await harness.send(text="reply while away", channel=str(GENERAL))  # held by the outbox
    s.release()
    assert await s.next_ready() == "resumed"
    texts = [(await harness.next_event()).data["text"] for _ in range(2)]
    assert texts == ["!echo while away 1", "!echo while away 2"]
    assert (await s.next_post())["content"] == "reply while away"
    assert s.stats.identifies == 1 and s.stats.resumes == 1 and s.stats.replayed >= 2
    assert s.stats.heartbeats >= 2  # one on each connection at once (each ACKed), as the docs ask
    await s.drop()  # a close frame with code 4000: resumed as well
    assert await s.next_ready() == "resumed"
    await s.say("!echo after")
    assert (await harness.next_event()).data["text"] == "!echo after"


async def test_a_refused_resume_falls_back_to_a_fresh_identify(harness: Harness) -> None:
    s = harness.standin
    s.refuse_resume = True
    await s.drop()
    assert await s.next_ready(timeout=20) == "identified"  # discord.py waits 5 s: the identify limit
    assert s.stats.invalidated == 1 and s.stats.identifies == 2
    await s.say("!echo fresh")
    assert (await harness.next_event()).data["text"] == "!echo fresh"
    await harness.send(text="still answering", channel=str(GENERAL))
    assert (await s.next_post())["content"] == "still answering"


async def test_a_restarted_server_is_reached_again(nats_server: NatsServer) -> None:
    standin = await DiscordStandIn(TOKEN).start()
    adapter, task = await _start(standin, nats_server.url)
    try:
        assert await standin.next_ready() == "identified"
        assert standin.stats.intents[0] & INTENT_MESSAGE_CONTENT
        await standin.close()  # Discord is gone (REST and gateway) ...
        standin = await DiscordStandIn(TOKEN).start(port=standin.port)  # ... and back, knowing no session
        assert await standin.next_ready(timeout=30) == "identified"
        await adapter._bus().publish(  # as the router would
            "rosey.chat.discord.send",
            OutgoingMessage(text="back", channel=str(GENERAL)).to_wire(),
            source="t",
        )
        assert (await standin.next_post())["content"] == "back"
    finally:
        adapter.stop()
        await asyncio.wait_for(task, 15)
        await standin.close()


class _Errors(logging.Handler):
    """Wakes a waiter on each error record of the adapter's logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.changed.set()

    async def until(self, needle: str, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(needle in m for m in self.messages):
                self.changed.clear()
                await self.changed.wait()


@pytest.mark.parametrize(
    ("token", "portal_switch", "hint"),
    [("wrong-token-Qz", True, "token was refused"), (TOKEN, False, "Message Content Intent")],
)
async def test_a_refused_token_or_intent_is_logged_with_what_to_do(
    nats_server: NatsServer, token: str, portal_switch: bool, hint: str
) -> None:
    standin = await DiscordStandIn(TOKEN).start()
    standin.message_content_enabled = portal_switch
    errors = _Errors()
    log = logging.getLogger("bot.rosey.adapters.discord")
    log.addHandler(errors)
    adapter, task = await _start(standin, nats_server.url, token=token)
    try:
        await errors.until(hint)
        assert not any(token in m or TOKEN in m for m in errors.messages)  # the hint, never the token
        assert standin.stats.identifies == 0
    finally:
        log.removeHandler(errors)
        adapter.stop()
        await asyncio.wait_for(task, 15)
        await standin.close()


def _adapter(**settings: Any) -> DiscordAdapter:
    return DiscordAdapter(
        name="discord",
        settings=settings,
        secrets={"token": TOKEN},
        state_dir=".",
        nats_url="nats://127.0.0.1:1",
    )


def test_settings_are_read_and_checked() -> None:
    adapter = _adapter(guilds=[GUILD, str(GUILD)], channels=str(GENERAL), op_roles=["Mods", 42])
    assert adapter.guild_ids == {GUILD} and adapter.channel_ids == {GENERAL}
    assert adapter.op_roles == {"mods", "42"}
    assert adapter.api_base == "https://discord.com/api/v10"
    assert _adapter(api_base="https://chat.example.org").api_base == "https://chat.example.org/api/v10"
    assert _adapter(api_base="http://127.0.0.1:8080/api/v9/").api_base == "http://127.0.0.1:8080/api/v9"
    for bad, needle in (
        ({"guilds": ["general"]}, "Copy ID"),
        ({"channels": [True]}, "Copy ID"),
        ({"op_roles": [["x"]]}, "role names"),
        ({"api_base": "discord.com"}, "api_base must be a URL"),
        ({"gateway": "https://gateway.discord.gg"}, "gateway must be a URL"),
    ):
        with pytest.raises(ValueError, match=needle):
            _adapter(**bad)


def test_the_sandbox_grants_follow_the_urls() -> None:
    from bot.rosey.adapters.types import ADAPTER_TYPES

    kind = ADAPTER_TYPES["discord"]
    assert kind.ports({}) == (443,)
    assert kind.hosts({}) == ("discord.com", "gateway.discord.gg")  # names: UDP for DNS
    local = {"api_base": "http://127.0.0.1:8080/api/v10"}
    assert kind.ports(local) == (443, 8080) and kind.hosts(local) == ("127.0.0.1",)  # no DNS needed
    both = {"api_base": "https://d.example.org", "gateway": "wss://gw.example.org:8443"}
    assert kind.ports(both) == (443, 8443) and kind.hosts(both) == ("d.example.org", "gw.example.org")
    assert kind.check({"api_base": "nope"}) and kind.check({}) is None
