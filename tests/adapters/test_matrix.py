"""The Matrix adapter in this process against a real Synapse (``matrix_server``) and a real NATS.

Humans are matrix-nio clients on the same homeserver; what the adapter hears is read on
``rosey.adapters.matrix.events.>``, what it says is published on ``rosey.chat.matrix.send``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.broker.nats_server import NatsServer
from bot.rosey.core.chat import MAX_TEXT_CHARS, split_text
from tests.adapters.matrix_server import (
    PASSWORD,
    Bus,
    SynapseServer,
    humans,
    running_adapter,
    synapse,
    user_id,
)

__all__ = ["synapse"]  # the module's server fixture

BOT = user_id("rosey")


def content_of(event: dict[str, Any]) -> dict[str, Any]:
    content = event.get("content")
    assert isinstance(content, dict)
    return content


async def test_a_room_message_comes_in_and_the_reply_goes_back_to_it(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with humans(synapse, "alice") as (alice,):
        room = await alice.create_room(alias="general", invite=(BOT,))
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(synapse, nats_server.url, tmp_path, rooms=["#general:localhost"]),
        ):
            await alice.membership(room, BOT, "join")
            sent = await alice.send(room, "!echo hi")
            (event,) = await bus.wait(text="!echo hi")
            assert event.data["channel"] == room
            assert event.data["message_id"] == sent
            assert event.data["user"]["id"] == user_id("alice")
            assert event.data["user"]["name"] == "alice"
            assert event.data["user"]["roles"] == ["admin"]  # the room's creator: power 100
            assert event.data["thread_id"] is None and event.data["reply_to"] is None

            await bus.say(channel=room, text="hi **there** <script>alert(1)</script>", reply_to=sent)
            (reply,) = await alice.bot_says(room, BOT)
            content = content_of(reply)
            assert content["body"] == "hi **there** <script>alert(1)</script>"
            assert content["msgtype"] == "m.notice"
            assert content["format"] == "org.matrix.custom.html"
            assert "<strong>there</strong>" in content["formatted_body"]
            assert "<script" not in content["formatted_body"]
            assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": sent}}
            assert content["m.mentions"] == {"user_ids": [user_id("alice")]}


async def test_an_encrypted_room_is_named_in_the_log_told_once_and_never_answered_silently(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with humans(synapse, "alice") as (alice,):
        plain = await alice.create_room(invite=(BOT,))
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(
                synapse, nats_server.url, tmp_path, rooms=[plain], auto_join=["@alice:localhost"]
            ) as adapter,
        ):
            secret = await alice.create_room(invite=(BOT,), encrypted=True)
            await alice.membership(secret, BOT, "join")
            for _ in range(2):
                await alice.send_event(
                    secret, "m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}
                )
            (notice,) = await alice.bot_says(secret, BOT)
            assert "end-to-end encrypted" in content_of(notice)["body"]
            assert content_of(notice)["msgtype"] == "m.notice"
            # Replies to it, or to a room the bot is not in, are refused and logged, never lost quietly.
            await bus.say(channel=secret, text="into the encrypted room")
            await bus.say(channel="!nowhere:localhost", text="into no room")
            await bus.say(channel=plain, text="after")
            (after,) = await alice.bot_says(plain, BOT)
            assert content_of(after)["body"] == "after"
            assert adapter.outbox.stats.dropped == 2
            assert adapter.encrypted_unread == 2
            await alice.send(plain, "!echo plain")
            await bus.wait(text="!echo plain")
    assert (
        len([e for _, e in alice.timeline if e.get("sender") == BOT and e["type"] == "m.room.message"]) == 2
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [
        w for w in warnings if secret in w and "is end-to-end encrypted" in w and "not supported yet" in w
    ]
    assert len([w for w in warnings if "could not read a message from @alice:localhost" in w]) == 1
    assert [w for w in warnings if "message not sent" in w and "encrypted" in w]
    assert [w for w in warnings if "message not sent" in w and "!nowhere:localhost" in w]


async def test_threads_and_replies_are_read_and_answered_in_place(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with humans(synapse, "alice") as (alice,):
        room = await alice.create_room(invite=(BOT,))
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(synapse, nats_server.url, tmp_path, rooms=[room]),
        ):
            await alice.membership(room, BOT, "join")
            root = await alice.send(room, "a thread root")
            in_thread = await alice.send(
                room,
                "!echo t",
                **{
                    "m.relates_to": {
                        "rel_type": "m.thread",
                        "event_id": root,
                        "is_falling_back": True,
                        "m.in_reply_to": {"event_id": root},
                    }
                },
            )
            (event,) = await bus.wait(text="!echo t")
            assert event.data["thread_id"] == root
            assert event.data["reply_to"] is None  # a fallback reply is no reply
            assert event.data["message_id"] == in_thread

            # An older client's reply: quoted fallback before the text, which is still a command.
            quoted = await alice.send(
                room,
                f"> <{user_id('alice')}> a thread root\n\n!echo r",
                **{"m.relates_to": {"m.in_reply_to": {"event_id": root}}},
            )
            (event,) = await bus.wait(text="!echo r")
            assert event.data["reply_to"] == root and event.data["thread_id"] is None

            await bus.say(channel=room, text="in the thread", thread_id=root, reply_to=in_thread)
            await bus.say(channel=room, text="in the thread again", thread_id=root)
            await bus.say(channel=room, text="a reply", reply_to=quoted)
            first, second, third = await alice.bot_says(room, BOT, count=3)
            assert content_of(first)["m.relates_to"] == {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": False,
                "m.in_reply_to": {"event_id": in_thread},
            }
            # Not a reply to one message: falls back to the thread's latest event (the bot's own).
            assert content_of(second)["m.relates_to"] == {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": first["event_id"]},
            }
            assert content_of(third)["m.relates_to"] == {"m.in_reply_to": {"event_id": quoted}}


async def test_roles_come_from_power_levels_and_members_joining_and_leaving_are_events(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with humans(synapse, "alice", "bob", "carol", "dave") as (alice, bob, carol, dave):
        power = {bob.user_id: 50, carol.user_id: 1}
        room = await alice.create_room(invite=(BOT, bob.user_id, carol.user_id, dave.user_id), power=power)
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(synapse, nats_server.url, tmp_path, rooms=[room]),
        ):
            await alice.membership(room, BOT, "join")
            for person in (bob, carol, dave):
                await person.join(room)
            joins = await bus.wait("user_join", count=3, channel=room)
            roles = {e.data["user"]["id"]: e.data["user"]["roles"] for e in joins}
            assert roles == {bob.user_id: ["op"], carol.user_id: ["voice"], dave.user_id: []}
            for person in (alice, bob, carol, dave):
                await person.send(room, f"!roles from {person.name}")
            said = {
                e.data["user"]["id"]: e.data["user"]["role"]
                for e in await bus.wait(count=4, channel=room)
                if e.data["text"].startswith("!roles")
            }
            assert said == {
                alice.user_id: "admin",
                bob.user_id: "op",
                carol.user_id: "voice",
                dave.user_id: "user",
            }
            assert await carol.client.room_leave(room)
            (left,) = await bus.wait("user_leave", channel=room)
            assert left.data["user"]["id"] == carol.user_id
            assert not [e for e in bus.events if e.data["user"]["id"] == BOT]  # never the bot itself


async def test_the_bot_ignores_its_own_messages_and_notices_edits_and_odd_content(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with humans(synapse, "alice") as (alice,):
        room = await alice.create_room(invite=(BOT,))
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(synapse, nats_server.url, tmp_path, rooms=[room], notice=False) as adapter,
        ):
            await alice.membership(room, BOT, "join")
            await bus.say(channel=room, text="!echo loop")  # as m.text, like a command
            await alice.bot_says(room, BOT)
            first = await alice.send(room, "!echo first")
            await alice.send(room, "!echo notice", msgtype="m.notice")  # other bots talk in notices
            await alice.send(
                room,
                "* !echo edited",
                **{
                    "m.new_content": {"msgtype": "m.text", "body": "!echo edited"},
                    "m.relates_to": {"rel_type": "m.replace", "event_id": first},
                },
            )
            # What a hostile or broken client may send (Synapse itself refuses a body or msgtype
            # that is not a string): none of it stops the adapter.
            await alice.send(room, "\x1b[31m!echo red\x07\x00 \u202e")
            await alice.send(room, "!echo odd relation", **{"m.relates_to": "not an object"})
            await alice.send(room, "!echo odd reply", **{"m.relates_to": {"m.in_reply_to": ["x"]}})
            await alice.send(
                room, "!echo odd thread", **{"m.relates_to": {"rel_type": "m.thread", "event_id": 7}}
            )
            await alice.send_event(room, "m.room.message", {"msgtype": "m.text", "body": "!x", "format": 5})
            await alice.send_event(room, "org.example.weird", {"anything": None})
            await alice.send(room, "!echo last")
            await bus.wait(text="!echo last")
            assert bus.texts() == [
                "!echo first",
                "[31m!echo red \u202e",
                "!echo odd relation",
                "!echo odd reply",
                "!echo odd thread",
                "!x",
                "!echo last",
            ]
            assert adapter.sessions == 1  # never disconnected


async def test_private_messages_in_direct_rooms_and_private_replies(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with humans(synapse, "alice", "bob") as (alice, bob):
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(
                synapse, nats_server.url, tmp_path, auto_join=["@alice:localhost", "#bobs-den:localhost"]
            ) as adapter,
        ):
            # Alice opens a DM (is_direct): allowed by name, joined, her commands are private.
            dm = await alice.create_room(invite=(BOT,), is_direct=True)
            await alice.membership(dm, BOT, "join")
            await alice.send(dm, "!whoami")
            (event,) = await bus.wait("private_message", text="!whoami")
            assert event.data["channel"] == alice.user_id  # a private message's channel: its sender
            await bus.say(private_to=alice.user_id, text="only for you")
            (reply,) = await alice.bot_says(dm, BOT)
            assert content_of(reply)["body"] == "only for you"

            # Bob has no DM with the bot: one is opened (and used again), he is invited.
            await bus.say(private_to=bob.user_id, text="hello bob")
            opened = await bob.wait_invite()
            await bob.join(opened)
            await bus.say(private_to=bob.user_id, text="hello again")
            said = await bob.bot_says(opened, BOT, count=2)
            assert [content_of(e)["body"] for e in said] == ["hello bob", "hello again"]
            assert len(bob.invites) == 1
            await bob.send(opened, "!ping")
            (event,) = await bus.wait("private_message", text="!ping")
            assert event.data["channel"] == bob.user_id
            await bus.say(channel=bob.user_id, text="pong")  # a reply to that channel: the same room
            await bob.wait_for(lambda r, e: r == opened and e.get("content", {}).get("body") == "pong")

            # Bob may not bring the bot anywhere: the invite is refused...
            refused = await bob.create_room(invite=(BOT,))
            await bob.membership(refused, BOT, "leave")
            # ...but into an allow-listed alias, yes.
            den = await bob.create_room(alias="bobs-den", invite=(BOT,))
            await bob.membership(den, BOT, "join")
            await bob.send(den, "!in the den")  # two members: private
            (event,) = await bus.wait("private_message", text="!in the den")
            assert event.data["channel"] == bob.user_id
            await bob.client.room_invite(den, user_id("carol"))  # a third member: a room
            await bob.send(den, "!still the den")
            (event,) = await bus.wait("message", text="!still the den")
            assert event.data["channel"] == den

            # Nobody to talk to: refused and logged, and the next message goes on.
            await bus.say(private_to="@ghost:localhost", text="boo")
            await bus.say(private_to="not a user id", text="boo")
            await bus.say(private_to=alice.user_id, text="after the ghosts")
            await alice.wait_for(
                lambda r, e: r == dm and e.get("content", {}).get("body") == "after the ghosts"
            )
            assert adapter.outbox.stats.dropped == 2
    assert any("refused an invite" in r.getMessage() and refused in r.getMessage() for r in caplog.records), (
        "the refused invite is logged"
    )


async def test_a_long_reply_is_split_whole_and_in_order(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with humans(synapse, "alice") as (alice,):
        room = await alice.create_room(invite=(BOT,))
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(synapse, nats_server.url, tmp_path, rooms=[room], rate=100, burst=100) as adapter,
        ):
            await alice.membership(room, BOT, "join")
            words = ["héllo", "wörld", "€uro", "😀👍🏽", "e\u0301", "平仮名", "plain"]
            short = " ".join(words[i % len(words)] for i in range(400))[:2000]
            await bus.say(channel=room, text=short)
            (whole,) = await alice.bot_says(room, BOT)
            assert content_of(whole)["body"] == short  # 2,000 characters are one Matrix message

            # The longest text a message may carry on the bus (MAX_TEXT_CHARS), mostly multi-byte.
            lines = (" ".join(words[(i + j) % len(words)] for j in range(30)) for i in range(1000))
            long = "\n".join(lines)[: MAX_TEXT_CHARS - 100]
            expected = len(split_text(long, max_bytes=adapter.max_message_bytes, newlines=True))
            assert expected >= 2 and len(long.encode()) > 25_000
            await bus.say(channel=room, text=long)
            said = await alice.bot_says(room, BOT, count=1 + expected)
            pieces = [content_of(e)["body"] for e in said[1:]]
            assert all(len(p.encode()) <= adapter.max_message_bytes for p in pieces)
            assert "\n".join(pieces) == long  # lines packed whole: nothing lost, nothing cut inside
            assert adapter.outbox.stats.sent == 1 + expected

            # HTML escaping can make the formatted copy 5x the text: past the event limit it is
            # left out, and the plain text still goes.
            heavy = "**&** " + "&" * 15_000
            await bus.say(channel=room, text=heavy)
            said = await alice.bot_says(room, BOT, count=2 + expected)
            assert content_of(said[-1])["body"] == heavy and "formatted_body" not in content_of(said[-1])


async def test_a_burst_of_50_replies_all_arrive_in_order(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with humans(synapse, "alice") as (alice,):
        room = await alice.create_room(invite=(BOT,))
        # The bot is exempt from rc_message here (as an operator would set it): its own pace only.
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(synapse, nats_server.url, tmp_path, rooms=[room], rate=50, burst=50) as adapter,
        ):
            await alice.membership(room, BOT, "join")
            for n in range(50):
                await bus.say(channel=room, text=f"burst {n}")
            said = await alice.bot_says(room, BOT, count=50, timeout=30)
            assert [content_of(e)["body"] for e in said] == [f"burst {n}" for n in range(50)]
            assert adapter.outbox.stats.sent == 50 and adapter.outbox.stats.dropped == 0
            assert adapter.sessions == 1


async def test_the_homeservers_real_message_limit_is_waited_out_and_nothing_is_lost(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    """User `paced` is under Synapse's default rc_message (0.2/s, burst 10); the adapter is set
    to go faster than that, so the homeserver answers M_LIMIT_EXCEEDED and the adapter waits."""
    paced = user_id("paced")
    async with humans(synapse, "alice") as (alice,):
        room = await alice.create_room(invite=(paced,))
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(
                synapse, nats_server.url, tmp_path, user="paced", rooms=[room], rate=20, burst=20
            ) as adapter,
        ):
            await alice.membership(room, paced, "join")
            for n in range(11):  # one more than the burst: one wait of 1/0.2 = 5 s
                await bus.say(channel=room, text=f"paced {n}")
            said = await alice.bot_says(room, paced, count=11, timeout=40)
            assert [content_of(e)["body"] for e in said] == [f"paced {n}" for n in range(11)]
            assert adapter.rate_limited >= 1  # the server did push back
            assert adapter.outbox.stats.sent == 11 and adapter.outbox.stats.dropped == 0
            assert adapter.sessions == 1
    # Nothing doubled by a retry either (the transaction id is reused).
    assert (
        len([e for _, e in alice.timeline if e.get("sender") == paced and e["type"] == "m.room.message"])
        == 11
    )


async def test_defaults_pace_like_synapse() -> None:
    from bot.rosey.adapters.matrix import MatrixAdapter

    assert (MatrixAdapter.default_rate, MatrixAdapter.default_burst) == (0.2, 10)  # Synapse's rc_message


async def test_a_restart_resumes_from_the_stored_sync_token(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    """History before the first start is never a command; what came while the adapter was away
    is handled once (more than one sync page of it), and nothing handled is handled again."""
    state = tmp_path / "state"
    async with humans(synapse, "alice") as (alice,), Bus(nats_server.url) as bus:
        room = await alice.create_room(invite=(BOT,))
        await alice.send(room, "!echo history")
        async with running_adapter(synapse, nats_server.url, state, rooms=[room]) as first:
            await alice.membership(room, BOT, "join")
            await alice.send(room, "!echo one")
            await bus.wait(text="!echo one")
            session = first.store.load_session()
            assert session is not None
        for name in ("session.json", "sync.json"):
            assert (state / name).stat().st_mode & 0o777 == 0o600
            assert PASSWORD not in (state / name).read_text()
        devices = len(synapse.devices("rosey"))

        away = [f"!echo away {n}" for n in range(60)]  # more than one sync's timeline (50)
        for text in away:
            await alice.send(room, text)
        async with running_adapter(synapse, nats_server.url, state, rooms=[room]) as second:
            await bus.wait(text=away[-1])
            await alice.send(room, "!echo two")
            await bus.wait(text="!echo two")
            assert second.store.load_session() == session  # the same device and token
        assert bus.texts() == ["!echo one", *away, "!echo two"]
        assert len(synapse.devices("rosey")) == devices

        # The token is revoked while the adapter is away: it logs in again, on the same device.
        synapse.request("POST", "/_matrix/client/v3/logout", {}, token=session.access_token)
        await alice.send(room, "!echo stale")  # missed, and older than catchup_max_age = 0
        async with running_adapter(synapse, nats_server.url, state, rooms=[room], catchup_max_age=0) as third:
            await alice.send(room, "!echo three")
            await bus.wait(text="!echo three")
            renewed = third.store.load_session()
            assert renewed is not None and renewed.device_id == session.device_id
            assert renewed.access_token != session.access_token
            assert third.skipped_old == 1
        assert bus.texts()[-2:] == ["!echo two", "!echo three"]


async def test_an_access_token_logs_in_and_bad_credentials_end_the_session_with_a_clear_error(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    from bot.rosey.adapters.matrix import MatrixAdapter, MatrixError

    keyed = user_id("keyed")
    token = synapse.login("keyed")["access_token"]
    async with humans(synapse, "alice") as (alice,):
        room = await alice.create_room(invite=(keyed,))
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(
                synapse,
                nats_server.url,
                tmp_path,
                user="keyed",
                secrets={"access_token": token},
                rooms=[room],
            ) as adapter,
        ):
            await alice.membership(room, keyed, "join")
            await alice.send(room, "!echo keyed")
            await bus.wait(text="!echo keyed")
            await bus.say(channel=room, text="keyed reply")
            await alice.bot_says(room, keyed)
            assert adapter.store.load_session() is None  # a given token is never written down
    settings = {"homeserver": synapse.url, "user": keyed}
    for secrets, error in (
        ({"access_token": "not-a-token"}, "refused the access token"),
        ({"access_token": token}, None),
        ({"password": "wrong"}, "password login as @keyed:localhost failed"),
        ({}, "no credentials"),
    ):
        if error is None:  # the token of another account
            secrets, error = {"access_token": synapse.login("bob")["access_token"]}, "is @bob:localhost's"
        adapter = MatrixAdapter(name="matrix", settings=settings, secrets=secrets, state_dir=tmp_path / "x")
        with pytest.raises(MatrixError, match=error):
            await adapter.run_session()


async def test_the_homeserver_stopped_and_started_again_is_reconnected_to(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with humans(synapse, "alice") as (alice,):
        room = await alice.create_room(invite=(BOT,))
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(synapse, nats_server.url, tmp_path, rooms=[room], rate=50, burst=50) as adapter,
        ):
            await alice.membership(room, BOT, "join")
            await alice.send(room, "!echo before")
            await bus.wait(text="!echo before")
            await asyncio.to_thread(synapse.stop)
            await bus.say(channel=room, text="said while the homeserver was down")
            await asyncio.to_thread(synapse.start)
            await alice.send(room, "!echo after")
            await bus.wait(text="!echo after")
            (queued,) = await alice.wait_for(
                lambda r, e: (
                    r == room and e.get("content", {}).get("body") == "said while the homeserver was down"
                )
            )
            assert queued["sender"] == BOT
            assert adapter.sessions >= 2
            assert adapter.outbox.stats.dropped == 0
        assert bus.texts() == ["!echo before", "!echo after"]


async def test_a_room_joined_on_invite_brings_no_history_as_commands(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with humans(synapse, "alice") as (alice,):
        async with (
            Bus(nats_server.url) as bus,
            running_adapter(synapse, nats_server.url, tmp_path, auto_join=["@alice:localhost"]),
        ):
            room = await alice.create_room(invite=(user_id("carol"),))
            for n in range(3):
                await alice.send(room, f"!echo before the bot {n}")  # visible history ("shared")
            assert await alice.client.room_invite(room, BOT)
            await alice.membership(room, BOT, "join")
            await alice.send(room, "!echo after")
            await bus.wait(text="!echo after")
            assert bus.texts() == ["!echo after"]
