"""The Matrix adapter in this process against a real Synapse (``matrix_server``) and a real NATS.

Humans are matrix-nio clients on the same homeserver; what the adapter hears is read on
``rosey.adapters.matrix.events.>``, what it says is published on ``rosey.chat.matrix.send``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.broker.nats_server import NatsServer
from tests.adapters.matrix_server import Bus, SynapseServer, humans, running_adapter, synapse, user_id

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
        async with Bus(nats_server.url) as bus, running_adapter(
            synapse, nats_server.url, tmp_path, rooms=["#general:localhost"]
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


async def test_encrypted_room_is_named_in_the_log(
    synapse: SynapseServer, nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with humans(synapse, "alice") as (alice,):
        async with running_adapter(synapse, nats_server.url, tmp_path, auto_join=["@alice:localhost"]):
            room = await alice.create_room(invite=(BOT,), encrypted=True)
            await alice.membership(room, BOT, "join")
            await alice.send_event(room, "m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"})
            (notice,) = await alice.bot_says(room, BOT)
            assert "end-to-end encrypted" in content_of(notice)["body"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(room in w and "not supported yet" in w for w in warnings), warnings
