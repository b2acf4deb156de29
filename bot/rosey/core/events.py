"""The event envelope: what every message on Rosey's bus carries, and its wire format.

Wire format (JSON object, UTF-8), version 1::

    {"v": 1, "id": "<hex>", "type": "<event_type>", "source": "<who>",
     "ts": <unix seconds>, "cid": "<correlation id or null>", "data": {...}}

The subject is not repeated in the payload: it is the NATS subject the message travels on.
Decoding ignores fields it does not know (so newer senders can add some), reads a missing
``data`` as ``{}``, and rejects anything that is not a JSON object, or whose ``data`` is not an
object, raising :class:`MalformedEvent`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from bot.rosey.errors import MalformedEvent

try:  # issue 17: ~10x faster than the stdlib both ways; the stdlib decides every case orjson would not
    import orjson as _orjson
except ImportError:  # pragma: no cover - a base dependency, but the envelope works without it
    _orjson = None  # type: ignore[assignment]

__all__ = ["WIRE_VERSION", "Event", "new_id"]

WIRE_VERSION = 1


def _fresh_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(10).hex()
    _id_counter = itertools.count(1)


_id_prefix = ""
_id_counter = itertools.count(1)
_fresh_prefix()
# A forked child (the zygote's plugins) must not repeat its parent's ids.
os.register_at_fork(after_in_child=_fresh_prefix)


def new_id() -> str:
    """A unique identifier for events and correlation ids: a random per-process prefix and a
    counter (32 hex digits). Unique, not secret, and ~10x cheaper than uuid4 (bench/PROFILE.md)."""
    return f"{_id_prefix}{next(_id_counter):012x}"


#: datetime/dataclass values go to the stdlib (which refuses them) instead of being written by orjson.
_ORJSON_OPTIONS = (
    0 if _orjson is None else _orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME
)
#: orjson reads integers past 64 bits as floats (the stdlib keeps them exact): a payload with a run
#: of 19 digits anywhere is read by the stdlib (any 18-digit integer fits in 64 bits).
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def _encode(envelope: dict[str, Any], nulls: int) -> bytes:
    """JSON for ``envelope``, byte for byte what the stdlib would accept (``nulls``: how many
    ``null`` the envelope itself has). orjson writes NaN/Infinity as ``null`` where the rule is to
    refuse them, so an output with any other ``null`` (a None in data, or the word in a string)
    and anything orjson refuses (non-str keys, huge ints, cycles) go the stdlib's way."""
    if _orjson is not None:
        try:
            out: bytes = _orjson.dumps(envelope, option=_ORJSON_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError
            pass
        else:
            if out.count(b"null") == nulls:
                return out
    # allow_nan=False: NaN/Infinity are not JSON, and non-Python peers would choke on them.
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _decode(payload: bytes) -> Any:
    """``json.loads(payload)``, by orjson where it reads the same (see ``_LONG_NUMBER``); what orjson
    refuses (NaN, lone surrogates, a BOM, deep nesting) the stdlib reads or refuses as before."""
    if _orjson is not None and isinstance(payload, bytes) and _LONG_NUMBER.search(payload) is None:
        try:
            return _orjson.loads(payload)
        except ValueError:  # orjson.JSONDecodeError
            pass
    return json.loads(payload)


def _default_event_type(subject: str) -> str:
    return subject.rsplit(".", 1)[-1] if subject else "unknown"


@dataclass(kw_only=True)
class Event:
    """One message on the bus.

    ``reply`` is not part of the wire format: it is the NATS reply subject the message arrived
    with, set by the bus on received events so that a handler can answer a request.
    """

    subject: str
    data: dict[str, Any] = field(default_factory=dict)
    source: str = "unknown"
    event_type: str = ""
    correlation_id: str | None = None
    timestamp: float = field(default_factory=time.time)
    id: str = field(default_factory=new_id)
    version: int = WIRE_VERSION
    reply: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data, dict):
            raise TypeError(f"Event.data must be a dict, not {type(self.data).__name__}")
        if not self.event_type:
            self.event_type = _default_event_type(self.subject)

    def to_bytes(self) -> bytes:
        """Encode for the wire. Raises ``TypeError`` if ``data`` is not JSON-serializable."""
        envelope = {
            "v": self.version,
            "id": self.id,
            "type": self.event_type,
            "source": self.source,
            "ts": self.timestamp,
            "cid": self.correlation_id,
            "data": self.data,
        }
        try:
            return _encode(envelope, 1 if self.correlation_id is None else 0)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"event data for {self.subject!r} is not JSON-serializable: {exc}") from exc

    @classmethod
    def from_bytes(cls, payload: bytes, subject: str, reply: str | None = None) -> Event:
        """Decode a wire payload received on ``subject``; raise :class:`MalformedEvent` if invalid."""
        try:
            raw = _decode(payload)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise MalformedEvent(f"message on {subject!r} is not JSON: {exc}", subject=subject) from exc
        if not isinstance(raw, dict):
            raise MalformedEvent(f"message on {subject!r} is not a JSON object", subject=subject)
        data = raw.get("data", {})
        if not isinstance(data, dict):
            raise MalformedEvent(
                f"message on {subject!r} has a 'data' that is not an object", subject=subject
            )
        try:
            version = int(raw.get("v", WIRE_VERSION))
            timestamp = float(raw.get("ts", 0.0))
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedEvent(
                f"message on {subject!r} has a bad version or timestamp: {exc}", subject=subject
            ) from exc
        cid = raw.get("cid")
        return cls(
            subject=subject,
            data=data,
            source=str(raw.get("source", "unknown")),
            event_type=str(raw.get("type") or _default_event_type(subject)),
            correlation_id=None if cid is None else str(cid),
            timestamp=timestamp,
            id=str(raw.get("id") or new_id()),
            version=version,
            reply=reply or None,
        )
