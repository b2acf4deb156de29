"""The normalized chat vocabulary: cleaning, splitting, and reading what adapters send."""

from __future__ import annotations

import pytest

from bot.rosey.core.chat import ChatEvent, ChatUser, OutgoingMessage, Role, clean_text, split_text
from bot.rosey.errors import MalformedEvent

pytestmark = pytest.mark.no_nats


def test_clean_text_drops_control_characters_and_lone_surrogates() -> None:
    assert clean_text("hi\x1b[31mred\x00\x03 \ud800 ok\nnext\tx") == "hi[31mred \ufffd ok\nnext\tx"
    assert clean_text(b"caf\xc3\xa9 \xff") == "café \ufffd"  # invalid UTF-8 from a platform
    assert clean_text("a\nb", newlines=False) == "a b"
    assert clean_text("x" * 50, max_chars=10) == "x" * 9 + "…"
    assert clean_text(None) == ""


@pytest.mark.parametrize("max_bytes", [4, 5, 7, 50, 100])
def test_split_never_cuts_a_utf8_character_and_loses_nothing(max_bytes: int) -> None:
    text = "é漢🎉a" * 30
    pieces = split_text(text, max_bytes=max_bytes)
    assert all(len(p.encode()) <= max_bytes for p in pieces)
    assert "".join(pieces) == text


def test_split_breaks_at_spaces_and_keeps_every_word() -> None:
    words = [f"word{i}" for i in range(300)]
    pieces = split_text(" ".join(words), max_chars=50)
    assert all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces).split() == words
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)


def test_split_keeps_combining_marks_with_their_letter() -> None:
    text = ("e\u0301" * 10) + "x"
    pieces = split_text(text, max_chars=3)
    assert all(not p or not p[0] == "\u0301" for p in pieces)
    assert "".join(pieces) == text


def test_split_lines_one_per_message_or_packed() -> None:
    assert split_text("one\n\ntwo\n", max_chars=10) == ["one", "two"]
    assert split_text("one\ntwo\nthree", max_chars=9, newlines=True) == ["one\ntwo", "three"]


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.ADMIN > Role.OP > Role.VOICE > Role.USER
    assert Role.parse("Op") is Role.OP
    with pytest.raises(ValueError, match="use one of: user, voice, op, admin"):
        Role.parse("king")
    assert ChatUser(id="a", name="a", roles=(Role.VOICE, Role.OP)).role is Role.OP
    assert ChatUser(id="a", name="a").role is Role.USER


def test_chat_event_takes_its_platform_from_the_caller_not_the_data() -> None:
    raw = {
        "platform": "console",
        "channel": "#x",
        "user": {"id": "u1", "name": "Ann", "roles": ["op"]},
        "text": "hi",
    }
    event = ChatEvent.from_wire(raw, event_type="message", platform="irc", platform_type="irc")
    assert event.platform == "irc"
    wire = event.to_wire()
    assert wire["platform"] == "irc" and wire["user"] == {
        "id": "u1",
        "name": "Ann",
        "username": "Ann",
        "roles": ["op"],
        "role": "op",
    }


@pytest.mark.parametrize(
    "raw, kind, message",
    [
        ({"channel": "#x", "user": {"id": "u"}}, "shout", "unknown chat event type"),
        ({"user": {"id": "u"}}, "message", "without a channel"),
        ({"channel": "#x", "user": 5}, "message", "user must be an object"),
        ({"channel": "#x", "user": {}}, "message", "neither id nor name"),
        ({"channel": "#x", "user": {"id": "u", "roles": ["king"]}}, "message", "unknown role"),
    ],
)
def test_malformed_chat_events_are_refused(raw: dict, kind: str, message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        ChatEvent.from_wire(raw, event_type=kind, platform="irc", platform_type="irc")


def test_a_private_message_without_channel_is_from_its_sender() -> None:
    event = ChatEvent.from_wire(
        {"user": {"id": "bob"}}, event_type="private_message", platform="p", platform_type="p"
    )
    assert event.private and event.channel == "bob"


def test_outgoing_message_needs_one_destination() -> None:
    with pytest.raises(ValueError):
        OutgoingMessage(text="x")
    with pytest.raises(ValueError):
        OutgoingMessage(text="x", channel="#a", private_to="b")
    with pytest.raises(MalformedEvent):
        OutgoingMessage.from_wire({"text": "x"})
    message = OutgoingMessage.from_wire({"text": "x\x1b", "channel": "#a", "reply_to": "m1"})
    assert message == OutgoingMessage(text="x", channel="#a", reply_to="m1")
