"""The IRC adapter in this process against real IRC servers (miniircd, and ngircd when installed).

Humans are pydle clients on the same server; what the adapter hears is read on its NATS subject
``rosey.adapters.irc.events.>``, what it says is published on ``rosey.chat.irc.send``. Every wait
is for something to arrive (a line on IRC, an event on NATS, the adapter's connected flag).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.adapters.irc import IrcAdapter
from bot.rosey.adapters.irc_protocol import LINE_BYTES
from bot.rosey.broker.nats_server import NatsServer
from tests.adapters.irc_server import (
    OPER_PASSWORD,
    IrcServer,
    LogWatch,
    connect_user,
    irc_server,
    running_adapter,
    start_server,
)

__all__ = ["irc_server"]


async def test_channel_message_in_and_reply_out(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    alice = await connect_user(irc_server, "alice1", ["#room1"])
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey1", channels=["#room1"]
    ) as bot:
        await alice.joined("#room1", "rosey1")
        await alice.send("PRIVMSG #room1 :!echo hi")
        event = await bot.inbound.next("message", user="alice1")
        assert event["channel"] == "#room1"
        assert event["text"] == "!echo hi"
        assert event["user"]["name"] == "alice1"
        await bot.say("hi back", channel="#room1")
        assert await alice.said_by("rosey1", "#room1") == "hi back"
    await alice.quit()


async def test_private_message_in_and_out(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    bob = await connect_user(irc_server, "bob2")
    async with running_adapter(irc_server, nats_server.url, tmp_path, nick="rosey2") as bot:
        await bob.send("PRIVMSG rosey2 :!echo secret")
        event = await bot.inbound.next("private_message", user="bob2")
        assert event["channel"] == "bob2"
        assert event["text"] == "!echo secret"
        assert event["user"]["roles"] == []
        await bot.say("psst", private_to="bob2")
        assert await bob.said_by("rosey2", "bob2") == "psst"
    await bob.quit()


def _nick(message: object) -> str:
    return str(getattr(message, "source", "") or "").split("!")[0]


async def test_own_messages_and_join_are_never_events(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    carol = await connect_user(irc_server, "carol3", ["#room3"])
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey3", channels=["#room3"]
    ) as bot:
        await carol.joined("#room3", "rosey3")
        await bot.say("!echo I am the bot", channel="#room3")
        assert await carol.said_by("rosey3", "#room3") == "!echo I am the bot"
        await carol.send("PRIVMSG #room3 :marker")
        await bot.inbound.next("message", user="carol3", text="marker")
        # Everything the adapter published came from carol: not its own JOIN, not its own line.
        assert [e["user"]["id"] for e in bot.inbound.all()] == ["carol3"]
    await carol.quit()


async def test_join_part_quit_become_user_events(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey4", channels=["#room4"]
    ) as bot:
        dave = await connect_user(irc_server, "dave4", ["#room4"])
        assert (await bot.inbound.next("user_join", user="dave4"))["channel"] == "#room4"
        await dave.send("PART #room4 :bye")
        assert (await bot.inbound.next("user_leave", user="dave4"))["channel"] == "#room4"
        await dave.send("JOIN #room4")
        await bot.inbound.next("user_join", user="dave4")
        await dave.quit("gone")
        assert (await bot.inbound.next("user_leave", user="dave4"))["channel"] == "#room4"


async def test_notices_ctcp_and_formatting(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    erin = await connect_user(irc_server, "erin5", ["#room5"])
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey5", channels=["#room5"]
    ) as bot:
        await erin.joined("#room5", "rosey5")
        await erin.send("NOTICE #room5 :!echo from a notice")
        await erin.send("NOTICE rosey5 :!echo private notice")
        await erin.send("PRIVMSG #room5 :\x01ACTION !echo waves\x01")
        await erin.send("PRIVMSG rosey5 :\x01VERSION\x01")
        reply = await erin.expect(lambda m: m.command == "NOTICE" and _nick(m) == "rosey5")
        assert reply.params[1].startswith("\x01VERSION ") and "Rosey" in reply.params[1]
        await erin.send("PRIVMSG rosey5 :\x01PING 12345\x01")
        reply = await erin.expect(lambda m: m.command == "NOTICE" and _nick(m) == "rosey5")
        assert reply.params[1] == "\x01PING 12345\x01"
        await erin.send("PRIVMSG #room5 :\x0304,01!echo\x03 \x02bold\x02 \x1dand\x1d \x1funder\x0f")
        event = await bot.inbound.next("message", user="erin5")
        assert event["text"] == "!echo bold and under"
        assert [e["user"]["id"] for e in bot.inbound.all()] == ["erin5"]  # no notice, no CTCP
    await erin.quit()


async def test_invalid_utf8_and_control_characters_never_crash(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    frank = await connect_user(irc_server, "frank6", ["#room6"])
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey6", channels=["#room6"]
    ) as bot:
        await frank.joined("#room6", "rosey6")
        await frank.send(b"PRIVMSG #room6 :bad \xff\xfe\xc3( bytes")
        await frank.send(b"PRIVMSG #room6 :ansi \x1b[2J\x1b[31mred\x07 bell \x7f del")
        await frank.send("PRIVMSG #room6 :lone surrogate? \udcff".encode("utf-8", "surrogateescape"))
        await frank.send("PRIVMSG rosey6 :\x01\x01\x01")
        await frank.send("PRIVMSG #room6 :still alive")
        texts = []
        for _ in range(4):
            texts.append((await bot.inbound.next("message", user="frank6"))["text"])
        assert texts[-1] == "still alive"
        for text in texts:
            assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) < 0xA0 for c in text), text
        assert texts[1] == "ansi [2J[31mred bell  del"
        assert bot.adapter.sessions == 1
    await frank.quit()


def _reassembled(pieces: list[str]) -> str:
    return "".join(pieces).replace(" ", "")


@pytest.mark.parametrize("private", [False, True], ids=["channel", "private"])
async def test_long_reply_is_split_at_512_bytes_with_the_prefix(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path, private: bool
) -> None:
    nick, channel = ("gina7p", "#room7p") if private else ("gina7", "#room7")
    gina = await connect_user(irc_server, nick, [channel])
    words = ["ascii", "café", "日本語テキスト", "🎉🎉", "e\u0301e\u0301", "naïve"]
    text = " ".join(words[i % len(words)] for i in range(400))[:2000]
    text += "Ω" * (2000 - len(text))
    assert len(text) == 2000
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey7", channels=[channel]
    ) as bot:
        await gina.joined(channel, "rosey7")
        target = nick if private else channel
        await bot.say(text, **({"private_to": nick} if private else {"channel": channel}))
        pieces, lines = [], []
        while _reassembled(pieces) != text.replace(" ", ""):
            message = await gina.expect(lambda m: m.command == "PRIVMSG" and _nick(m) == "rosey7")
            assert message.params[0] == target
            pieces.append(message.params[1])
            lines.append(message._raw)
            assert len(_reassembled(pieces)) <= len(text), "more text arrived than was sent"
        assert len(pieces) >= 5
        for raw in lines:  # the line as the server relayed it, prefix included, + CR LF
            assert len(raw.encode("utf-8")) + 2 <= LINE_BYTES
            assert "\ufffd" not in raw
        for piece in pieces:  # never a combining mark cut from its letter
            assert piece and piece[0] != "\u0301"
        assert bot.adapter.sessions == 1
    await gina.quit()


async def test_fifty_replies_all_arrive_in_order_without_a_flood_disconnect(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    """50 replies at once: paced by the outbox (here 5 at once then 2.5/s: ngircd handles ~3
    commands per second per client, so this is the pace a real server takes without delaying
    or dropping), every one arrives, in order, on one connection."""
    hank = await connect_user(irc_server, "hank8", ["#room8"])
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey8", channels=["#room8"], rate=2.5, burst=5
    ) as bot:
        await hank.joined("#room8", "rosey8")
        for i in range(50):
            await bot.say(f"reply {i}", channel="#room8")
        got = [await hank.said_by("rosey8", "#room8", timeout=40) for _ in range(50)]
        assert got == [f"reply {i}" for i in range(50)]
        assert bot.adapter.sessions == 1
        assert bot.adapter.outbox.stats.dropped == 0
        assert not [m for m in hank.seen if m.command in ("ERROR", "KILL")]
    await hank.quit()


async def test_server_restart_reconnects_and_rejoins(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey9", channels=["#room9"]
    ) as bot:
        with LogWatch("disconnected") as watch:
            irc_server.stop()
            await watch.wait()
        assert not bot.adapter.outbox.connected.is_set()
        await bot.say("said while the server was down", channel="#room9")
        irc_server.start(irc_server.port)
        ivan = await connect_user(irc_server, "ivan9", ["#room9"])
        await bot.connected()
        await ivan.joined("#room9", "rosey9")
        assert await ivan.said_by("rosey9", "#room9") == "said while the server was down"
        await ivan.send("PRIVMSG #room9 :!echo back")
        await bot.inbound.next("message", user="ivan9", text="!echo back")
        assert bot.adapter.sessions >= 2
    await ivan.quit()


async def test_nick_in_use_falls_back_and_regains(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    squatter = await connect_user(irc_server, "rosey10", ["#room10"])
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey10", channels=["#room10"]
    ) as bot:
        await squatter.joined("#room10", "rosey10_")
        await bot.say("as rosey10_", channel="#room10")
        assert await squatter.said_by("rosey10_", "#room10") == "as rosey10_"
        jane = await connect_user(irc_server, "jane10", ["#room10"])
        await squatter.quit("freeing the nick")
        await jane.expect(
            lambda m: m.command == "NICK" and _nick(m) == "rosey10_" and m.params[0] == "rosey10"
        )
        await jane.send("PRIVMSG #room10 :hello")
        await bot.inbound.next("message", user="jane10", text="hello")
        await bot.say("as rosey10", channel="#room10")
        assert await jane.said_by("rosey10", "#room10") == "as rosey10"
    await jane.quit()


async def test_keyed_channel_is_joined_with_its_key(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    kim = await connect_user(irc_server, "kim11", ["#vault11"])
    await kim.send("MODE #vault11 +k sesame")
    await kim.expect(lambda m: m.command == "MODE" and m.params[:2] == ["#vault11", "+k"])
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey11", channels=["#vault11 sesame", "#open11"]
    ) as bot:
        await kim.joined("#vault11", "rosey11")
        await kim.send("PRIVMSG #vault11 :inside")
        await bot.inbound.next("message", user="kim11", text="inside", channel="#vault11")
    await kim.quit()


async def _logged(needle: str, adapter_factory: Callable[[], Any], timeout: float = 30.0) -> list[str]:
    """Run the adapter ``adapter_factory()`` makes until a log line contains ``needle``."""
    with LogWatch(needle) as watch:
        async with adapter_factory():
            await watch.wait(timeout)
    return watch.messages


@pytest.mark.parametrize("kind", ["miniircd", "ngircd"])
async def test_server_password(kind: str, nats_server: NatsServer, tmp_path: Path) -> None:
    server = start_server(kind, tmp_path / "server", password="open-sesame")
    try:
        async with running_adapter(
            server,
            nats_server.url,
            tmp_path,
            nick="rosey12",
            auth="server",
            secrets={"password": "open-sesame"},
        ) as bot:
            lee = await connect_user(server, "lee12", password="open-sesame")
            await lee.send("PRIVMSG rosey12 :ok")
            await bot.inbound.next("private_message", user="lee12", text="ok")
            await lee.quit()
        messages = await _logged(
            "disconnected",
            lambda: running_adapter(
                server,
                nats_server.url,
                tmp_path,
                nick="rosey12",
                auth="server",
                secrets={"password": "wrong"},
                wait=False,
            ),
        )
        assert not any("wrong" in m for m in messages), "the password was logged"
    finally:
        server.stop()


async def test_tls_with_and_without_verification(nats_server: NatsServer, tmp_path: Path) -> None:
    server = start_server("miniircd", tmp_path / "server", tls=True)
    try:
        async with running_adapter(
            server, nats_server.url, tmp_path, nick="rosey13", channels=["#tls13"]
        ) as bot:
            mia = await connect_user(server, "mia13", ["#tls13"])
            await mia.send("PRIVMSG #tls13 :over tls")
            await bot.inbound.next("message", user="mia13", text="over tls")
            await mia.quit()
        messages = await _logged(
            "CERTIFICATE_VERIFY_FAILED",
            lambda: running_adapter(
                server, nats_server.url, tmp_path, nick="rosey13", tls_verify=True, wait=False
            ),
        )
        assert any("CERTIFICATE_VERIFY_FAILED" in m for m in messages)
    finally:
        server.stop()


async def test_nickserv_identify_goes_to_nickserv_only(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    """No services package is installable here: a user named NickServ on the real server stands
    in for it, to show what the adapter sends and that it waits for the answer before joining."""
    nickserv = await connect_user(irc_server, "NickServ")
    async with running_adapter(
        irc_server,
        nats_server.url,
        tmp_path,
        nick="rosey14",
        channels=["#room14"],
        auth="nickserv",
        secrets={"password": "hunter2"},
        wait=False,
    ) as bot:
        identify = await nickserv.expect(lambda m: m.command == "PRIVMSG" and _nick(m) == "rosey14")
        assert identify.params == ["NickServ", "IDENTIFY rosey14 hunter2"]
        await nickserv.send("NOTICE rosey14 :You are now identified for \x02rosey14\x02.")
        await bot.connected()
    await nickserv.quit()


async def test_roles_from_channel_modes_and_rejoin_after_kick(
    irc_server: IrcServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    if irc_server.kind == "miniircd":
        pytest.skip("miniircd has no channel modes but +k (no op, no voice)")
    owner = await connect_user(irc_server, "owner15", ["#room15"])  # the creator gets +o on ngircd
    async with running_adapter(
        irc_server, nats_server.url, tmp_path, nick="rosey15", channels=["#room15"], rejoin_delay=0.2
    ) as bot:
        await owner.joined("#room15", "rosey15")
        guest = await connect_user(irc_server, "guest15", ["#room15"])
        await bot.inbound.next("user_join", user="guest15")
        await guest.send("PRIVMSG #room15 :plain")
        assert (await bot.inbound.next("message", user="guest15"))["user"]["roles"] == []
        for mode, roles in (("+v", ["voice"]), ("+h", ["op", "voice"]), ("-v", ["op"]), ("-h", [])):
            await owner.send(f"MODE #room15 {mode} guest15")
            await owner.expect(
                lambda m, mode=mode: m.command == "MODE" and m.params[1:3] == [mode, "guest15"]
            )
            await guest.expect(
                lambda m, mode=mode: m.command == "MODE" and m.params[1:3] == [mode, "guest15"]
            )
            await guest.send(f"PRIVMSG #room15 :after {mode}")
            event = await bot.inbound.next("message", user="guest15", text=f"after {mode}")
            assert event["user"]["roles"] == roles, mode
            assert event["user"]["role"] == (roles[0] if roles else "user")
        await owner.send("PRIVMSG #room15 :from the op")
        assert (await bot.inbound.next("message", user="owner15"))["user"]["roles"] == ["op"]
        await owner.send(f"OPER tester {OPER_PASSWORD}")
        await owner.expect(lambda m: m.command == 381)  # RPL_YOUREOPER
        for mode, roles in (("+a", ["admin"]), ("-a", []), ("+q", ["admin"]), ("-q", [])):
            await owner.send(f"MODE #room15 {mode} guest15")
            await guest.expect(
                lambda m, mode=mode: m.command == "MODE" and m.params[1:3] == [mode, "guest15"]
            )
            await guest.send(f"PRIVMSG #room15 :after {mode}")
            event = await bot.inbound.next("message", user="guest15", text=f"after {mode}")
            assert event["user"]["roles"] == roles, mode
        await owner.send("KICK #room15 guest15 :out")
        assert (await bot.inbound.next("user_leave", user="guest15"))["channel"] == "#room15"
        await owner.send("KICK #room15 rosey15 :you too")
        await owner.expect(lambda m: m.command == "KICK" and m.params[1] == "rosey15")
        await owner.joined("#room15", "rosey15")  # back after rejoin_delay
        await owner.send("PRIVMSG #room15 :welcome back")
        await bot.inbound.next("message", user="owner15", text="welcome back")
    await owner.quit()
    await guest.quit()


def test_settings_are_checked(tmp_path: Path) -> None:
    from bot.rosey.errors import ConfigError

    def make(settings: dict[str, object], secrets: dict[str, str] | None = None) -> IrcAdapter:
        return IrcAdapter(name="irc", settings=settings, secrets=secrets or {}, state_dir=tmp_path)

    adapter = make({"server": "irc.example.org", "nick": "rosey", "channels": ["#a", "#b key"]})
    assert adapter.config.port == 6697 and adapter.config.tls and adapter.config.tls_verify
    assert adapter.config.channels == (("#a", None), ("#b", "key"))
    assert make({"server": "x", "nick": "r", "tls": False}).config.port == 6667
    for bad, key in (
        ({"nick": "rosey"}, "server"),
        ({"server": "x"}, "nick"),
        ({"server": "x", "nick": "ro sey"}, "nick"),
        ({"server": "x", "nick": "r", "channels": "#a"}, "channels"),
        ({"server": "x", "nick": "r", "channels": ["nohash"]}, "channels"),
        ({"server": "x", "nick": "r", "port": "6667"}, "port"),
        ({"server": "x", "nick": "r", "auth": "kerberos"}, "auth"),
        ({"server": "x", "nick": "r", "auth": "sasl"}, "auth"),
    ):
        with pytest.raises(ConfigError) as caught:
            make(bad)
        assert caught.value.key == key
    with pytest.raises(ConfigError, match="auth"):
        make({"server": "x", "nick": "r"}, {"password": "pw"})
