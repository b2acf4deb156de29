"""The event envelope: what a plugin and the core agree on byte for byte.

Decoding is the trust boundary (any connected client can publish anything), so every way a
payload can be wrong must end in :class:`MalformedEvent`, never in another exception type
that a subscriber would not expect.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.rosey.core.events import WIRE_VERSION, Event, new_id
from bot.rosey.errors import MalformedEvent, RoseyError

pytestmark = pytest.mark.no_nats


def test_new_id_is_fresh_hex() -> None:
    first, second = new_id(), new_id()
    assert first != second
    assert len(first) == 32 and int(first, 16) >= 0


def test_round_trip_preserves_every_field() -> None:
    original = Event(
        subject="rosey.commands.echo.execute",
        data={"text": "héllo ✓", "n": 3, "nested": {"list": [1, 2.5, None, True]}},
        source="router",
        event_type="command",
        correlation_id="abc123",
        timestamp=1_700_000_000.25,
        id="0123456789abcdef",
    )
    decoded = Event.from_bytes(original.to_bytes(), original.subject, reply="_INBOX.x.y")
    assert decoded == original  # compares every field but ``reply``
    assert (decoded.id, decoded.timestamp, decoded.version) == (
        "0123456789abcdef",
        1_700_000_000.25,
        WIRE_VERSION,
    )
    assert decoded.correlation_id == "abc123"
    assert decoded.reply == "_INBOX.x.y"


def test_wire_format_is_the_documented_one() -> None:
    event = Event(subject="rosey.events.message", data={"a": 1}, source="s", correlation_id=None)
    wire = json.loads(event.to_bytes())
    assert set(wire) == {"v", "id", "type", "source", "ts", "cid", "data"}
    assert wire["v"] == WIRE_VERSION and wire["type"] == "message" and wire["cid"] is None
    assert "subject" not in wire  # the NATS subject carries it


def test_non_ascii_is_sent_as_utf8() -> None:
    payload = Event(subject="a.b", data={"text": "ünïcode"}).to_bytes()
    assert "ünïcode".encode() in payload


def test_unknown_fields_are_ignored() -> None:
    payload = json.dumps(
        {"v": 1, "id": "x1", "data": {"k": "v"}, "future_field": [1, 2], "meta": {}}
    ).encode()
    event = Event.from_bytes(payload, "rosey.events.message")
    assert event.data == {"k": "v"} and event.id == "x1"
    assert not hasattr(event, "future_field")


def test_event_type_defaults_to_the_last_subject_token() -> None:
    assert Event(subject="rosey.commands.echo.execute").event_type == "execute"
    assert Event(subject="single").event_type == "single"
    assert Event(subject="").event_type == "unknown"
    assert Event(subject="a.b", event_type="explicit").event_type == "explicit"
    decoded = Event.from_bytes(b'{"data": {}}', "rosey.plugins.echo.started")
    assert decoded.event_type == "started"


def test_minimal_payload_gets_defaults() -> None:
    event = Event.from_bytes(b'{"data": {"x": 1}}', "rosey.events.join", reply="")
    assert event.source == "unknown"
    assert event.correlation_id is None
    assert event.version == WIRE_VERSION
    assert len(event.id) == 32
    assert event.reply is None  # an empty reply subject means "no reply"


def test_reply_is_not_part_of_equality_or_wire() -> None:
    a = Event(subject="a.b", id="1", timestamp=1.0)
    b = Event(subject="a.b", id="1", timestamp=1.0, reply="_INBOX.1")
    assert a == b
    assert a.to_bytes() == b.to_bytes()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b'{"data": {"text": "caf\xe9"}}', "not JSON"),  # not UTF-8
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"a string"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'{"data": [1, 2]}', "'data' that is not an object"),
        (b'{"data": "text"}', "'data' that is not an object"),
        (b'{"data": null}', "'data' that is not an object"),
        (b'{"data": {}, "ts": "yesterday"}', "bad version or timestamp"),
        (b'{"data": {}, "ts": [1]}', "bad version or timestamp"),
        (b'{"data": {}, "ts": null}', "bad version or timestamp"),
        (b'{"data": {}, "v": "one"}', "bad version or timestamp"),
    ],
)
def test_malformed_payloads_raise_malformed_event(payload: bytes, why: str) -> None:
    with pytest.raises(MalformedEvent, match=why) as info:
        Event.from_bytes(payload, "rosey.events.message")
    assert isinstance(info.value, ValueError) and isinstance(info.value, RoseyError)
    assert "'rosey.events.message'" in str(info.value)  # names the subject it arrived on


def test_infinite_version_is_malformed() -> None:
    """``1e999`` parses as ``inf``; ``int(inf)`` is an OverflowError, which from_bytes lets through."""
    with pytest.raises(MalformedEvent):
        Event.from_bytes(b'{"data": {}, "v": 1e999}', "rosey.events.message")


@pytest.mark.parametrize("data", [{"when": object()}, {"raw": b"bytes"}, {"set": {1, 2}}])
def test_unserializable_data_raises_type_error(data: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="not JSON-serializable"):
        Event(subject="rosey.events.x", data=data).to_bytes()


def test_circular_data_raises_type_error() -> None:
    data: dict[str, Any] = {}
    data["self"] = data
    with pytest.raises(TypeError, match="not JSON-serializable"):
        Event(subject="rosey.events.x", data=data).to_bytes()


def test_data_must_be_a_dict() -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        Event(subject="a.b", data=[1, 2])  # type: ignore[arg-type]


def test_non_finite_numbers_are_not_serializable() -> None:
    """``NaN``/``Infinity`` are not JSON (RFC 8259): a non-Python consumer would reject the event."""
    with pytest.raises(TypeError):
        Event(subject="rosey.events.x", data={"ratio": float("nan")}).to_bytes()
