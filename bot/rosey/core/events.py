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

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bot.rosey.errors import MalformedEvent

__all__ = ["WIRE_VERSION", "Event", "new_id"]

WIRE_VERSION = 1


def new_id() -> str:
    """A fresh random identifier (32 hex digits) for events and correlation ids."""
    return uuid.uuid4().hex


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
            # allow_nan=False: NaN/Infinity are not JSON, and non-Python peers would choke on them.
            return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"event data for {self.subject!r} is not JSON-serializable: {exc}") from exc

    @classmethod
    def from_bytes(cls, payload: bytes, subject: str, reply: str | None = None) -> Event:
        """Decode a wire payload received on ``subject``; raise :class:`MalformedEvent` if invalid."""
        try:
            raw = json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise MalformedEvent(f"message on {subject!r} is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise MalformedEvent(f"message on {subject!r} is not a JSON object")
        data = raw.get("data", {})
        if not isinstance(data, dict):
            raise MalformedEvent(f"message on {subject!r} has a 'data' that is not an object")
        try:
            version = int(raw.get("v", WIRE_VERSION))
            timestamp = float(raw.get("ts", 0.0))
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedEvent(f"message on {subject!r} has a bad version or timestamp: {exc}") from exc
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
