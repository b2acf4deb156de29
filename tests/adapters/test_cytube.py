"""The CyTube adapter in-process against the fake CyTube server (real socket.io over TCP) and a
real nats-server: people in a channel are plain python-socketio clients (``CytubeUser``)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.core.chat import OutgoingMessage, Role
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.testing import NatsServer

from .cytube_server import CytubeUser, FakeCytube, cytube_server, cytube_tls_server, js_length

pytest.importorskip("socketio", reason="python-socketio is not installed (pip install -e '.[cytube]')")

from bot.rosey.adapters.cytube import CytubeAdapter, role_for_rank
from bot.rosey.adapters.cytube_text import html_to_text

__all__ = ["cytube_server", "cytube_tls_server"]  # the fixtures, used by name

_names = itertools.count(1)
#: The fixture's throttle is fast (5, +5/s) so tests that reconnect stay fast; the adapter is
#: told the same, as an operator would set it for their server.
FAST = {"connect_burst": 5, "connect_rate": 5.0, "reconnect_min": 0.2, "reconnect_max": 1.0}


async def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Wait for ``check()`` to hold (it reads state another task or thread changes)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Inbound:
    """What the adapter published on ``rosey.adapters.<name>.events.>``."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    async def handle(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: str, where: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        return [
            e.data
            for e in self.events
            if e.subject.endswith(f".events.{kind}") and (where is None or where(e.data))
        ]

    async def wait(
        self, kind: str, where: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 20.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                found = self.of(kind, where)
                if found:
                    return found[0]
                self._changed.clear()
                await self._changed.wait()


class Bot:
    def __init__(self, adapter: CytubeAdapter, bus: EventBus, inbound: Inbound, channel: str) -> None:
        self.adapter = adapter
        self.bus = bus
        self.inbound = inbound
        self.channel = channel
        self.joined_sessions = 0  # sessions it took to get in (the shared throttle may refuse one)

    async def say(self, text: str, *, channel: str | None = None, private_to: str | None = None) -> None:
        if private_to is None:
            channel = channel or self.channel
        message = OutgoingMessage(text=text, channel=channel, private_to=private_to)
        await self.bus.publish(Subjects.chat_send(self.adapter.name), message.to_wire(), source="test")


@asynccontextmanager
async def running_bot(
    nats_server: NatsServer,
    server: FakeCytube,
    tmp_path: Path,
    *,
    user: str = "rosey",
    password: str | None = None,
    wait_joined: bool = True,
    **settings: Any,
) -> AsyncIterator[Bot]:
    name = f"cytube_{next(_names)}"
    channel = settings.pop("channel", f"chan{next(_names)}")
    adapter = CytubeAdapter(
        name=name,
        settings={"server": server.url, "channel": channel, "user": user, **FAST, **settings},
        secrets={"password": password} if password else {},
        state_dir=tmp_path,
        nats_url=nats_server.url,
    )
    bus = EventBus(nats_server.url, name="test")
    await bus.connect()
    inbound = Inbound()
    await bus.subscribe(f"{Subjects.ADAPTERS}.{name}.events.>", inbound.handle)
    await bus.flush()
    task = asyncio.create_task(adapter.run())
    try:
        if wait_joined:
            async with asyncio.timeout(20):
                await adapter.outbox.connected.wait()
        bot = Bot(adapter, bus, inbound, channel)
        bot.joined_sessions = adapter.sessions
        yield bot
    finally:
        adapter.stop()
        await asyncio.wait_for(task, 15)
        await bus.disconnect()


async def said_by(person: CytubeUser, name: str, count: int, event: str = "chatMsg") -> list[str]:
    """The first ``count`` messages ``person`` saw from ``name``, as plain text."""

    def mine(d: Any) -> bool:
        return isinstance(d, dict) and d.get("username") == name and isinstance(d.get("msg"), str)

    await person.wait_for(event, mine, count=count)
    return [html_to_text(d["msg"]) for d in person.seen(event, mine)]


# ---------------------------------------------------------------------------------- chat


async def test_channel_messages_in_and_out_and_own_messages_ignored(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    async with running_bot(nats_server, cytube_server, tmp_path) as bot:
        async with CytubeUser(cytube_server, bot.channel, "carol") as carol:
            await carol.say("!echo hi")
            event = await bot.inbound.wait("message")
            assert event["channel"] == bot.channel
            assert event["text"] == "!echo hi"
            assert event["user"]["id"] == "carol" and event["user"]["roles"] == []

            await bot.say("hi")
            assert await said_by(carol, "rosey", 1) == ["hi"]
            await bot.say("!echo loop")  # the bot's own command-looking line, broadcast back to it
            await said_by(carol, "rosey", 2)
            await carol.say("after")
            await bot.inbound.wait("message", lambda e: e["text"] == "after")
            senders = [e["user"]["name"] for e in bot.inbound.of("message")]
            assert senders == ["carol", "carol"]
    assert cytube_server.dropped["length"] == 0 and cytube_server.dropped["throttle"] == 0


async def test_history_replayed_on_join_is_never_a_command(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    channel = f"hist{next(_names)}"
    cytube_server.add_history(channel, "dave", "!echo from the past", time.time() * 1000 - 60_000)
    async with CytubeUser(cytube_server, channel, "erin") as erin:
        await erin.say("!echo before the bot came")
        async with running_bot(nats_server, cytube_server, tmp_path, channel=channel) as bot:
            await erin.say("!echo now")
            event = await bot.inbound.wait("message")
            assert event["text"] == "!echo now"
            assert [e["text"] for e in bot.inbound.of("message")] == ["!echo now"]
            assert bot.adapter.history_skipped == 2


async def test_text_from_the_server_is_unescaped_and_cleaned(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    async with running_bot(nats_server, cytube_server, tmp_path) as bot:
        async with CytubeUser(cytube_server, bot.channel, "fred") as fred:
            await fred.say(
                """<b>no tag</b> & "quotes" (parens) 'single' *bold* see https://example.org/a_b"""
            )
            event = await bot.inbound.wait("message")
            assert (
                event["text"]
                == """<b>no tag</b> & "quotes" (parens) 'single' bold see https://example.org/a_b"""
            )
            await fred.say("bell\x07 escape\x1b[31m red")  # the server turns control runs into spaces
            event = await bot.inbound.wait("message", lambda e: e["text"].startswith("bell"))
            assert "\x1b" not in event["text"] and "\x07" not in event["text"]


async def test_odd_or_hostile_data_from_the_server_never_crashes_the_adapter(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    async with running_bot(nats_server, cytube_server, tmp_path) as bot:
        async with CytubeUser(cytube_server, bot.channel, "gina") as gina:
            for event, data in [
                ("chatMsg", None),
                ("chatMsg", "not an object"),
                ("chatMsg", {"username": 5, "msg": "x"}),
                ("chatMsg", {"username": "gina", "msg": None}),
                ("chatMsg", {"username": "gina", "msg": "\x1b[2J\x00evil\ud800 text\u2028", "time": "x"}),
                ("pm", {"username": "gina", "msg": ["list"], "to": "rosey"}),
                ("userlist", "not a list"),
                ("userlist", [None, 5, {"name": None}, {"name": "gina", "rank": "high"}]),
                ("addUser", {"rank": 3}),
                ("userLeave", "gina"),
                ("setUserRank", {"name": "gina", "rank": None}),
                ("rank", "x"),
                ("channelOpts", {"chat_antiflood": True, "chat_antiflood_params": "nonsense"}),
                ("cooldown", "soon"),
                ("errorMsg", None),
                ("kick", None),
                ("login", "yes"),
            ]:
                cytube_server.inject(bot.channel, event, data)
            await gina.say("still alive")
            await bot.inbound.wait("message", lambda e: e["text"] == "still alive")
            evil = [e["text"] for e in bot.inbound.of("message") if "evil" in e["text"]]
            assert evil == ["[2Jevil\ufffd text"]  # no escape, no NUL, no lone surrogate
            await bot.say("and answering")
            assert await said_by(gina, "rosey", 1) == ["and answering"]
            assert bot.adapter.sessions == bot.joined_sessions


# ---------------------------------------------------------------------------------- private


async def test_private_messages_both_ways(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    async with running_bot(nats_server, cytube_server, tmp_path) as bot:
        async with CytubeUser(cytube_server, bot.channel, "hank") as hank:
            await hank.pm("rosey", "!echo secret")
            event = await bot.inbound.wait("private_message")
            assert event["channel"] == "hank" and event["user"]["id"] == "hank"
            assert event["text"] == "!echo secret"

            await bot.say("nobody is here", private_to="nobody")  # refused: dropped, and nothing stalls
            await bot.say("just for you", private_to="hank")
            assert await said_by(hank, "rosey", 1, event="pm") == ["just for you"]
            assert not hank.seen("chatMsg", lambda d: d["username"] == "rosey")
            await wait_until(lambda: bot.adapter.outbox.stats.dropped == 1, what="the refused PM")
            assert bot.inbound.of("private_message") == [event]  # its own PM copy is no event


# ---------------------------------------------------------------------------------- users


def test_rank_to_role() -> None:
    assert [role_for_rank(r) for r in (-1, 0, 1, 1.5, 2, 3, 4, 5, 255)] == [
        Role.USER,
        Role.USER,
        Role.USER,
        Role.VOICE,
        Role.OP,
        Role.ADMIN,
        Role.ADMIN,
        Role.ADMIN,
        Role.ADMIN,
    ]


async def test_roles_follow_ranks_and_joins_and_leaves_are_events(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    channel = f"ranks{next(_names)}"
    async with CytubeUser(cytube_server, channel, "alice", password="alice-pw") as alice:  # rank 3
        async with running_bot(nats_server, cytube_server, tmp_path, channel=channel) as bot:
            async with CytubeUser(cytube_server, channel, "bob", password="bob-pw") as bob:  # rank 1
                joined = await bot.inbound.wait("user_join")
                assert joined["user"]["name"] == "bob" and joined["channel"] == channel
                await alice.say("from alice")
                await bob.say("from bob")
                await bot.inbound.wait("message", lambda e: e["text"] == "from bob")
                cytube_server.set_rank("bob", 1.5)
                await bob.wait_for("setUserRank")
                await bob.say("bob the leader")
                await bot.inbound.wait("message", lambda e: e["text"] == "bob the leader")
                cytube_server.set_rank("bob", 2)
                await bob.wait_for("setUserRank", count=2)
                await bob.say("bob the moderator")
                await bot.inbound.wait("message", lambda e: e["text"] == "bob the moderator")
            left = await bot.inbound.wait("user_leave")
            assert left["user"]["name"] == "bob"
        roles = {e["text"]: e["user"]["role"] for e in bot.inbound.of("message")}
        assert roles == {
            "from alice": "admin",
            "from bob": "user",
            "bob the leader": "voice",
            "bob the moderator": "op",
        }
        # alice was there before the bot: the initial userlist is no join.
        assert [e["user"]["name"] for e in bot.inbound.of("user_join")] == ["bob"]
    cytube_server.set_rank("bob", 1)


async def test_registered_moderator_bot_never_runs_chat_commands(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    async with running_bot(
        nats_server, cytube_server, tmp_path, user="rosey_bot", password="bot-secret"
    ) as bot:  # rank 2: /clear and /kick would work for it
        async with CytubeUser(cytube_server, bot.channel, "ivan") as ivan:
            await bot.inbound.wait("user_join")  # as a moderator, the bot also gets "[server]" notices
            commands = len(cytube_server.commands)
            await bot.say("/clear")
            await bot.say("/kick ivan")
            assert await said_by(ivan, "rosey_bot", 2) == [" /clear", " /kick ivan"]
            assert len(cytube_server.commands) == commands
            assert not ivan.seen("kick") and not ivan.seen("clearchat")
            assert bot.inbound.of("message") == []  # "[server] ivan joined" is no message
        assert bot.adapter.sessions == bot.joined_sessions


# ---------------------------------------------------------------------------------- limits


async def test_a_2000_character_reply_is_split_whole_at_the_servers_limit(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    words = ["café", "naïve", "日本語のテキスト", "emoji😀🎉", "Ωmega", "plain", "(parens)", "x" * 40]
    text = " ".join(itertools.islice(itertools.cycle(words), 200))[:2000]
    text += "😀" * 200  # no spaces, astral: two UTF-16 units each, cut between characters only
    async with running_bot(nats_server, cytube_server, tmp_path) as bot:
        async with CytubeUser(cytube_server, bot.channel, "judy") as judy:
            await bot.say(text)
            expected = len(bot.adapter.split(OutgoingMessage(text=text, channel=bot.channel)))
            pieces = await said_by(judy, "rosey", expected)
    assert cytube_server.dropped["length"] == 0
    assert all(0 < js_length(p) <= 320 for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
    assert not any("\ufffd" in p for p in pieces)


async def test_max_message_chars_setting(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    async with running_bot(nats_server, cytube_server, tmp_path, max_message_chars=50) as bot:
        async with CytubeUser(cytube_server, bot.channel, "kate") as kate:
            await bot.say("word " * 40)
            pieces = await said_by(kate, "rosey", 4)
    assert all(len(p) <= 50 for p in pieces) and len(pieces) == 4


async def test_a_burst_of_50_replies_all_arrive_unthrottled(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    before = dict(cytube_server.dropped)
    async with running_bot(nats_server, cytube_server, tmp_path) as bot:
        async with CytubeUser(cytube_server, bot.channel, "liam") as liam:
            for n in range(50):
                await bot.say(f"reply {n:02d}")
            pieces = await said_by(liam, "rosey", 50)
            assert pieces == [f"reply {n:02d}" for n in range(50)]
        assert bot.adapter.pacer.cooldowns == 0
        assert bot.adapter.outbox.stats.dropped == 0
        assert bot.adapter.sessions == bot.joined_sessions  # no disconnect
    assert dict(cytube_server.dropped) == before


async def test_the_channels_own_antiflood_is_followed(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    channel = f"flood{next(_names)}"
    cytube_server.set_options(
        channel, chat_antiflood=True, chat_antiflood_params={"burst": 4, "sustained": 2, "cooldown": 2}
    )
    before = cytube_server.dropped["throttle"]
    async with running_bot(nats_server, cytube_server, tmp_path, channel=channel) as bot:  # a guest
        async with CytubeUser(cytube_server, channel, "mia") as mia:
            for n in range(10):
                await bot.say(f"slow {n}")
            assert await said_by(mia, "rosey", 10) == [f"slow {n}" for n in range(10)]
        assert bot.adapter.pacer.cooldowns == 0
    assert cytube_server.dropped["throttle"] == before


async def test_a_cooldown_is_waited_out_and_the_message_sent_again(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    cytube_server.chat_limits_override = {"burst": 3, "sustained": 4, "cooldown": 2}  # not announced
    before = cytube_server.dropped["throttle"]
    try:
        async with running_bot(nats_server, cytube_server, tmp_path) as bot:
            async with CytubeUser(cytube_server, bot.channel, "noah") as noah:
                for n in range(15):
                    await bot.say(f"line {n}")
                assert await said_by(noah, "rosey", 15) == [f"line {n}" for n in range(15)]
            assert bot.adapter.pacer.cooldowns >= 1
            assert bot.adapter.outbox.stats.dropped == 0
    finally:
        cytube_server.chat_limits_override = None
    assert cytube_server.dropped["throttle"] > before  # the server did drop, and nothing was lost


# ---------------------------------------------------------------------------------- logins


async def test_a_wrong_password_backs_off_and_is_never_logged(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(
        nats_server,
        cytube_server,
        tmp_path,
        user="rosey_bot",
        password="wrong-pw",
        wait_joined=False,
        login_retry=300,
    ) as bot:
        await wait_until(lambda: bot.adapter.login_refused == 1, what="the refused login")
        sessions = bot.adapter.sessions
        assert bot.adapter.reconnect_delay(1) > 250
        assert bot.adapter.sessions == sessions
    assert "wrong-pw" not in caplog.text
    assert "refused the login" in caplog.text


async def test_a_guest_login_delay_is_waited_out(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    channel = f"guest{next(_names)}"
    cytube_server.guest_login_delay = 1.5
    try:
        async with CytubeUser(cytube_server, channel, "olga", ip="127.0.0.1"):  # the bot's IP
            async with running_bot(nats_server, cytube_server, tmp_path, channel=channel) as bot:
                assert bot.adapter.login_waits == 1  # waited on the same connection ...
                assert bot.adapter.login_refused == 0  # ... not taken as a refused login
                assert cytube_server.users_in(channel) == ["olga", "rosey"]
    finally:
        cytube_server.guest_login_delay = 0.0


# ---------------------------------------------------------------------------------- reconnects


async def test_the_connection_throttle_is_respected_not_fatal(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    cytube_server.set_connect_throttle(burst=5, rate=0.5)  # one token per 2 s
    refused_before = cytube_server.refused
    hogs: list[Any] = []
    try:
        import socketio

        for _ in range(5):  # someone else on the bot's IP took the whole burst
            client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
            await client.connect(
                cytube_server.url, headers={"X-Forwarded-For": "127.0.0.1"}, transports=["websocket"]
            )
            hogs.append(client)
        started = time.monotonic()
        async with running_bot(
            nats_server, cytube_server, tmp_path, connect_burst=5, connect_rate=0.5
        ) as bot:
            assert bot.adapter.throttle.refused == 1
            assert cytube_server.refused - refused_before == 1  # waited for the token, no hammering
            assert time.monotonic() - started >= 1.5
            async with CytubeUser(cytube_server, bot.channel, "pete") as pete:
                await bot.say("through")
                assert await said_by(pete, "rosey", 1) == ["through"]
    finally:
        for client in hogs:
            await client.disconnect()
        cytube_server.set_connect_throttle(burst=5, rate=5.0)


async def test_server_restart_reconnects_and_delivers_what_was_queued(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    async with running_bot(nats_server, cytube_server, tmp_path) as bot:
        cytube_server.stop()
        try:
            await wait_until(lambda: not bot.adapter.outbox.connected.is_set(), what="the disconnect")
            await bot.say("said while the server was down")
            await wait_until(
                lambda: bot.adapter.sessions >= bot.joined_sessions + 2, what="reconnect attempts"
            )
        finally:
            cytube_server.start()
        async with asyncio.timeout(20):
            await bot.adapter.outbox.connected.wait()
        async with CytubeUser(cytube_server, bot.channel, "quinn") as quinn:
            # Delivered after the reconnect: seen live, or in the history replay if it went first.
            assert await said_by(quinn, "rosey", 1) == ["said while the server was down"]
            await quinn.say("!echo back")
            await bot.inbound.wait("message", lambda e: e["text"] == "!echo back")
        assert bot.adapter.outbox.stats.dropped == 0


async def test_a_kick_ends_in_a_reconnect(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    async with running_bot(nats_server, cytube_server, tmp_path) as bot:
        cytube_server.kick("rosey", "testing")
        await wait_until(lambda: bot.adapter.sessions > bot.joined_sessions, what="a new session")
        async with asyncio.timeout(20):
            await bot.adapter.outbox.connected.wait()
        async with CytubeUser(cytube_server, bot.channel, "rita") as rita:
            await rita.say("welcome back")
            await bot.inbound.wait("message", lambda e: e["text"] == "welcome back")


# ---------------------------------------------------------------------------------- TLS


async def test_tls_the_secure_server_is_chosen(
    nats_server: NatsServer, cytube_tls_server: FakeCytube, tmp_path: Path
) -> None:
    # socketconfig lists http:// first; only the https:// one answers on that port.
    async with running_bot(nats_server, cytube_tls_server, tmp_path, tls_verify=False) as bot:
        async with CytubeUser(cytube_tls_server, bot.channel, "sara") as sara:
            await sara.say("over tls")
            await bot.inbound.wait("message", lambda e: e["text"] == "over tls")
            await bot.say("back over tls")
            assert await said_by(sara, "rosey", 1) == ["back over tls"]


async def test_tls_certificates_are_verified_by_default(
    nats_server: NatsServer, cytube_tls_server: FakeCytube, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_bot(nats_server, cytube_tls_server, tmp_path, wait_joined=False) as bot:
        await wait_until(lambda: bot.adapter.sessions >= 2, what="a second attempt")
        assert not bot.adapter.outbox.connected.is_set()
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


async def test_a_name_still_held_is_waited_for(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path
) -> None:
    """After a drop, the server may still hold the bot's old session (until its ping timeout):
    the guest name is "already in use". The adapter tries again on the same connection."""
    channel = f"ghost{next(_names)}"
    ghost = CytubeUser(cytube_server, channel, "rosey")
    await ghost.__aenter__()
    try:
        async with running_bot(
            nats_server, cytube_server, tmp_path, channel=channel, wait_joined=False
        ) as bot:
            await wait_until(lambda: bot.adapter.login_waits == 1, what="'That name is already in use'")
            await ghost.__aexit__(None, None, None)  # the old session times out at last
            async with asyncio.timeout(20):
                await bot.adapter.outbox.connected.wait()
            assert bot.adapter.login_refused == 0
    finally:
        if ghost.client.connected:
            await ghost.client.disconnect()


async def test_a_server_that_stops_answering_is_noticed_and_reconnected(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """No FIN, no error: the server just goes silent. Engine.IO's pings tell; then reconnect."""
    server = FakeCytube(connect_rate=5.0, guest_login_delay=0.0, ping_interval=1.0, ping_timeout=2.0)
    server.start()
    try:
        async with running_bot(nats_server, server, tmp_path) as bot:
            server.freeze(5.0)  # longer than ping interval + timeout
            await wait_until(lambda: not bot.adapter.outbox.connected.is_set(), what="the silence noticed")
            await wait_until(lambda: bot.adapter.sessions > bot.joined_sessions, what="a new session")
            async with asyncio.timeout(30):
                await bot.adapter.outbox.connected.wait()
            async with CytubeUser(server, bot.channel, "tina") as tina:
                await tina.say("you are back")
                await bot.inbound.wait("message", lambda e: e["text"] == "you are back")
    finally:
        server.close()


async def test_messages_the_server_drops_silently_do_not_stall_the_queue(
    nats_server: NatsServer, cytube_server: FakeCytube, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    channel = f"mute{next(_names)}"
    cytube_server.set_chat_permission(channel, 1)  # registered users only: the guest bot may not chat
    async with running_bot(nats_server, cytube_server, tmp_path, channel=channel, send_timeout=0.5) as bot:
        async with CytubeUser(cytube_server, channel, "ursula") as ursula:
            for n in range(3):
                await bot.say(f"unheard {n}")
            await wait_until(lambda: bot.adapter.unconfirmed == 3, what="three unconfirmed messages")
            cytube_server.set_chat_permission(channel, 0)
            await bot.say("heard")
            assert await said_by(ursula, "rosey", 1) == ["heard"]
        assert bot.adapter.outbox.stats.dropped == 0
        assert bot.adapter.sessions == bot.joined_sessions
    assert "did not confirm" in caplog.text
