"""Matrix events as plain data: what the adapter reads out of them and the content it sends.

Everything here works on the JSON of events (``event.source``), never trusting its shape: a
field of the wrong type reads as absent. Pure functions, so the rules (where history ends, who
created a room, how a reply or a thread answer is shaped) are tested without a homeserver.

Plugin-process side: the standard library only.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MAX_CONTENT_BYTES",
    "after_own_join",
    "as_dict",
    "creators_of",
    "direct_map",
    "message_content",
    "privileged_creators",
    "remember",
    "timestamp",
]

#: A whole event may be 65,536 bytes; past this much content the HTML copy is left out.
MAX_CONTENT_BYTES = 48_000


def as_dict(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def after_own_join(events: list[dict[str, Any]], own: str) -> Iterable[dict[str, Any]]:
    """The events after the bot's last join in ``events`` (what precedes it is history).

    A join is a membership change to "join" from anything else: a profile change (join to
    join) is not one, and does not cut the timeline.
    """
    start = 0
    for index, source in enumerate(events):
        if source.get("type") == "m.room.member" and source.get("state_key") == own:
            content = as_dict(source.get("content"))
            previous = as_dict(as_dict(source.get("unsigned")).get("prev_content"))
            if content.get("membership") == "join" and previous.get("membership") != "join":
                start = index + 1
    return events[start:]


def creators_of(create: Mapping[str, Any]) -> frozenset[str]:
    """The creators an ``m.room.create`` event names (its sender, and room v12's additional ones)."""
    more = as_dict(create.get("content")).get("additional_creators")
    extra = [c for c in more if isinstance(c, str)] if isinstance(more, list) else []
    return frozenset([str(create["sender"]), *extra])


def privileged_creators(room_version: object) -> bool:
    """Whether creators outrank every power level (room version 12 and later)."""
    version = str(room_version)
    return (version.isdigit() and int(version) >= 12) or version.startswith("org.matrix.hydra")


def direct_map(content: object) -> dict[str, list[str]]:
    """``m.direct`` account data: user -> their direct rooms (malformed entries dropped)."""
    return {
        str(user): [r for r in rooms if isinstance(r, str)]
        for user, rooms in as_dict(content).items()
        if isinstance(rooms, list)
    }


def timestamp(source: Mapping[str, Any]) -> float:
    """The event's ``origin_server_ts`` (ms); now for an event without a usable one."""
    stamp = source.get("origin_server_ts")
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        return float(stamp)
    return time.time() * 1000


def remember(cache: OrderedDict[str, Any], key: str, value: Any, limit: int = 4096) -> None:
    """Put ``key`` in a bounded cache, dropping the oldest beyond ``limit``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def message_content(
    text: str,
    *,
    msgtype: str = "m.notice",
    html: str | None = None,
    reply_to: str | None = None,
    thread_id: str | None = None,
    thread_latest: str | None = None,
    mentioned: str | None = None,
) -> dict[str, Any]:
    """The content of an ``m.room.message`` saying ``text``.

    ``html`` becomes ``formatted_body`` unless the event would then be too large. In a thread
    (``thread_id``, the root), ``m.in_reply_to`` is the message answered with
    ``is_falling_back: false``, or, answering none, the thread's latest event (``thread_latest``,
    else the root) with ``is_falling_back: true``, as the spec asks for clients without threads.
    ``m.mentions`` is always there (empty, or the person replied to): text alone pings nobody.
    """
    content: dict[str, Any] = {"msgtype": msgtype, "body": text}
    if html is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = html
    content["m.mentions"] = {"user_ids": [mentioned]} if mentioned else {}
    if thread_id:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": thread_id,
            "is_falling_back": reply_to is None,
            "m.in_reply_to": {"event_id": reply_to or thread_latest or thread_id},
        }
    elif reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    if html is not None and _size(content) > MAX_CONTENT_BYTES:
        del content["format"], content["formatted_body"]  # the plain text still fits
    return content


def _size(content: Mapping[str, Any]) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode("utf-8"))
