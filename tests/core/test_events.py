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


# ---------------------------------------------------------------- issue 17: orjson, same rules


def _stdlib_bytes(event: Event) -> bytes:
    """What the envelope was before orjson: the stdlib's encoding of the same fields."""
    envelope = {
        "v": event.version,
        "id": event.id,
        "type": event.event_type,
        "source": event.source,
        "ts": event.timestamp,
        "cid": event.correlation_id,
        "data": event.data,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@pytest.mark.parametrize(
    "data",
    [
        {"args": ["hi"], "user": "console", "channel": "console"},
        {"text": "héllo ✓ 🎲", "n": -3, "f": 0.1, "neg": -0.0, "big": 2**63 - 1, "t": True},
        {"none": None, "word": "null", "nested": [{"a": None}]},  # orjson's NaN is "null": the stdlib decides
        {
            1: "int keys",
            2.5: "float keys",
            None: "none key",
            False: "bool key",
        },  # orjson refuses; stdlib converts
        {"huge": 2**70, "neg_huge": -(2**70)},  # past 64 bits: the stdlib writes them exactly
        {"deep": [[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]},
    ],
)
def test_encoding_reads_back_as_the_stdlib_encoding_does(data: dict[Any, Any]) -> None:
    for cid in ("c-1", None):
        event = Event(subject="rosey.events.x", data=data, source="s", correlation_id=cid)
        assert json.loads(event.to_bytes()) == json.loads(_stdlib_bytes(event))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("cid", ["c-1", None])
def test_non_finite_numbers_are_refused_anywhere_in_data(value: float, cid: str | None) -> None:
    """orjson would write them as ``null``; the envelope refuses them, as it always did."""
    for data in ({"x": value}, {"x": [1, {"y": value}]}, {"x": None, "y": value}):
        with pytest.raises(TypeError, match="not JSON-serializable"):
            Event(subject="rosey.events.x", data=data, correlation_id=cid).to_bytes()


def test_values_json_cannot_hold_are_refused_as_before() -> None:
    import dataclasses
    import datetime

    @dataclasses.dataclass
    class Point:
        x: int

    for value in (datetime.datetime(2026, 12, 2), datetime.date(2026, 12, 2), Point(1), b"raw", {1, 2}):
        with pytest.raises(TypeError, match="not JSON-serializable"):
            Event(subject="rosey.events.x", data={"v": value}).to_bytes()
    with pytest.raises(TypeError, match="not JSON-serializable"):
        Event(subject="rosey.events.x", data={(1, 2): "tuple key"}).to_bytes()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"data":{"n":123456789012345678901234567890}}',  # orjson would read a float
        b'{"data":{"n":-9223372036854775809}}',
        b'{"data":{"x":NaN,"y":Infinity}}',  # not JSON, but the stdlib reads it: kept as it was
        b'{"data":{"s":"\\ud800"}}',  # a lone surrogate
        b'{"data":{"big":1e400}}',
        b'\xef\xbb\xbf{"data":{"bom":1}}',
        b'{"data":{"a":1,"a":2}}',
    ],
)
def test_decoding_reads_what_the_stdlib_reads(payload: bytes) -> None:
    event = Event.from_bytes(payload, "rosey.events.x")
    expected = json.loads(payload)["data"]
    assert json.dumps(event.data, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert all(type(event.data[k]) is type(expected[k]) for k in expected)


@pytest.mark.parametrize("payload", [b"", b"{", b"[1]", b'{"data":[1]}', b"\xff\xfe", b"[" * 100_000])
def test_decoding_refuses_what_the_stdlib_refuses(payload: bytes) -> None:
    with pytest.raises(MalformedEvent):
        Event.from_bytes(payload, "rosey.events.x")
