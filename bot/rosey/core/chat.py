"""The normalized chat vocabulary: what every platform adapter says and hears, in one shape.

A plugin never learns which library an adapter uses: IRC, Matrix and CyTube all become these
types. Inbound, an adapter publishes a :class:`ChatEvent` on its own subject
(``rosey.adapters.<name>.events.<type>``); the core checks it, stamps the adapter's name as
``platform`` (an adapter cannot speak for another) and republishes it on ``rosey.events.<type>``,
where the router and plugins read it. Outbound, the router publishes an :class:`OutgoingMessage`
on ``rosey.chat.<name>.send``, which only that adapter may read.

Wire shape of an event's ``data`` (``to_wire``)::

    {"platform": "irc", "platform_type": "irc", "channel": "#rosey",
     "user": {"id": "alice", "name": "alice", "username": "alice", "roles": ["op"], "role": "op"},
     "text": "!echo hi", "message_id": "...", "thread_id": null, "reply_to": null,
     "private": false}

``user.username`` repeats ``name`` for plugins written against the console's older shape.
Text from a platform is untrusted: :func:`clean_text` drops control characters (except newline
and tab) and replaces what is not valid Unicode, so that no plugin or terminal is handed escape
sequences or lone surrogates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from bot.rosey.errors import MalformedEvent

__all__ = [
    "MAX_OUTGOING_CHARS",
    "MAX_TEXT_CHARS",
    "ChatEvent",
    "ChatEventType",
    "ChatUser",
    "FileRef",
    "OutgoingMessage",
    "Role",
    "clean_text",
    "split_text",
]

#: The longest text an event may carry; longer platform messages are cut (with "…").
MAX_TEXT_CHARS = 16_000
#: The longest reply the bot says: adapters split it into as many messages as the platform needs.
MAX_OUTGOING_CHARS = 200_000
_MAX_ID_CHARS = 512
_SURROGATE = re.compile("[\ud800-\udfff]")


class ChatEventType(StrEnum):
    """What happened on a platform; the value is the last token of ``rosey.events.<type>``."""

    MESSAGE = "message"  # said in a channel or room
    PRIVATE_MESSAGE = "private_message"  # said to the bot alone
    USER_JOIN = "user_join"
    USER_LEAVE = "user_leave"


class Role(IntEnum):
    """A user's standing on a platform, ordered: ``Role.OP >= Role.VOICE``.

    Mappings (each adapter documents its own): IRC voice (+v) -> VOICE, op (+o, +h) -> OP,
    admin/owner (+a, +q) -> ADMIN; Matrix power level >= 100 -> ADMIN, >= 50 -> OP, > 0 ->
    VOICE; CyTube rank >= 3 -> ADMIN, >= 2 -> OP, >= 1.5 (leader) -> VOICE; Discord server owner,
    Administrator or Manage Server -> ADMIN, a configured op role -> OP; Slack workspace admin or
    owner -> ADMIN.
    """

    USER = 0
    VOICE = 1
    OP = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Role:
        """``"op"`` -> ``Role.OP``; raises ValueError naming the valid roles."""
        try:
            return cls[str(value).upper()]
        except KeyError:
            valid = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {value!r} (use one of: {valid})") from None


def clean_text(value: object, *, max_chars: int = MAX_TEXT_CHARS, newlines: bool = True) -> str:
    """Platform text made safe to pass on: valid Unicode, no control characters, bounded.

    Newlines and tabs stay (unless ``newlines=False``, for names and ids); every other C0/C1
    control character (ANSI escapes, NUL, IRC's colour codes) and lone surrogates go.
    """
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    elif isinstance(value, str):
        # Lone surrogates (from a JSON "\\ud800") cannot be encoded: make them U+FFFD.
        text = _SURROGATE.sub("\ufffd", value)
    elif value is None:
        return ""
    else:
        text = str(value)
    kept = []
    for char in text:
        if char in "\n\t":
            kept.append(char if newlines else " ")
        elif unicodedata.category(char) == "Cc" or char in "\u2028\u2029":
            continue
        else:
            kept.append(char)
    text = "".join(kept)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def _optional_id(value: object) -> str | None:
    if value is None or value == "":
        return None
    return clean_text(value, max_chars=_MAX_ID_CHARS, newlines=False) or None


@dataclass(frozen=True, kw_only=True)
class ChatUser:
    """Who said it: a platform-stable ``id`` (IRC nick, Matrix user id, CyTube name) and a name."""

    id: str
    name: str
    roles: tuple[Role, ...] = ()

    @property
    def role(self) -> Role:
        """The highest role held (``Role.USER`` when none)."""
        return max(self.roles, default=Role.USER)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "username": self.name,
            "roles": [r.label for r in sorted(set(self.roles), reverse=True)],
            "role": self.role.label,
        }

    @classmethod
    def from_wire(cls, raw: object) -> ChatUser:
        if isinstance(raw, str):  # the console's old shape: a bare name
            name = clean_text(raw, max_chars=_MAX_ID_CHARS, newlines=False)
            return cls(id=name, name=name)
        if not isinstance(raw, Mapping):
            raise MalformedEvent(f"user must be an object, got {type(raw).__name__}")
        name = clean_text(
            raw.get("name") or raw.get("username") or "", max_chars=_MAX_ID_CHARS, newlines=False
        )
        user_id = _optional_id(raw.get("id")) or name
        if not user_id:
            raise MalformedEvent("user has neither id nor name")
        roles: list[Role] = []
        raw_roles = raw.get("roles") or ()
        if not isinstance(raw_roles, (list, tuple)):
            raise MalformedEvent("user.roles must be a list")
        for label in raw_roles:
            try:
                roles.append(Role.parse(label))
            except ValueError as exc:
                raise MalformedEvent(f"user.roles: {exc}") from None
        return cls(id=user_id, name=name or user_id, roles=tuple(roles))


@dataclass(frozen=True, kw_only=True)
class ChatEvent:
    """One normalized platform event (the ``data`` of ``rosey.events.<type>``).

    ``platform`` is the adapter's name in ``rosey.toml`` (``[adapters.NAME]``), which is also
    where replies go (``rosey.chat.<platform>.send``); ``platform_type`` is its kind ("irc").
    ``channel`` is where it happened (for a private message: the sender's id). ``thread_id``
    and ``reply_to`` are set where the platform has threads and replies (Matrix).
    """

    type: ChatEventType
    platform: str
    channel: str
    user: ChatUser
    text: str = ""
    platform_type: str = ""
    message_id: str | None = None
    thread_id: str | None = None
    reply_to: str | None = None

    @property
    def private(self) -> bool:
        return self.type is ChatEventType.PRIVATE_MESSAGE

    def to_wire(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "platform_type": self.platform_type or self.platform,
            "channel": self.channel,
            "user": self.user.to_wire(),
            "text": self.text,
            "message_id": self.message_id,
            "thread_id": self.thread_id,
            "reply_to": self.reply_to,
            "private": self.private,
        }

    @classmethod
    def from_wire(
        cls, raw: Mapping[str, Any], *, event_type: str, platform: str, platform_type: str
    ) -> ChatEvent:
        """Read (and clean) what an adapter sent; ``platform`` comes from the subject, not the data.

        Raises :class:`MalformedEvent` for a shape no adapter should send.
        """
        try:
            kind = ChatEventType(event_type)
        except ValueError:
            known = ", ".join(t.value for t in ChatEventType)
            raise MalformedEvent(f"unknown chat event type {event_type!r} (known: {known})") from None
        channel = clean_text(raw.get("channel") or "", max_chars=_MAX_ID_CHARS, newlines=False)
        user = ChatUser.from_wire(raw.get("user"))
        if not channel:
            if kind is not ChatEventType.PRIVATE_MESSAGE:
                raise MalformedEvent(f"{kind.value} event without a channel")
            channel = user.id
        return cls(
            type=kind,
            platform=platform,
            platform_type=platform_type,
            channel=channel,
            user=user,
            text=clean_text(raw.get("text")),
            message_id=_optional_id(raw.get("message_id")),
            thread_id=_optional_id(raw.get("thread_id")),
            reply_to=_optional_id(raw.get("reply_to")),
        )


# ---- files (issue 13, 6d): a file a plugin sent, stored by the host's files service
_FILE_ID = re.compile(r"[0-9a-f]{32}")
MIME_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
MAX_FILE_NAME_CHARS = 128


@dataclass(frozen=True, kw_only=True)
class FileRef:
    """A file the files service holds for one adapter (the ``file`` of an :class:`OutgoingMessage`).

    ``id`` is the service's random id (32 hex digits), never a path; the adapter fetches the bytes
    with it (``rosey.services.files.<adapter>.fetch``). ``name`` is the sanitised file name.
    """

    id: str
    name: str
    mime: str = "application/octet-stream"
    size: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "mime": self.mime, "size": self.size}

    @classmethod
    def from_wire(cls, raw: object) -> FileRef:
        if not isinstance(raw, Mapping):
            raise MalformedEvent(f"file must be an object, got {type(raw).__name__}")
        file_id, size, mime = raw.get("id"), raw.get("size"), raw.get("mime") or "application/octet-stream"
        if not isinstance(file_id, str) or not _FILE_ID.fullmatch(file_id):
            raise MalformedEvent("file.id must be 32 hex digits")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise MalformedEvent("file.size must be an integer >= 0")
        if not isinstance(mime, str) or not MIME_TYPE.fullmatch(mime):
            raise MalformedEvent("file.mime must be a media type like text/calendar")
        name = clean_text(raw.get("name"), max_chars=MAX_FILE_NAME_CHARS, newlines=False)
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise MalformedEvent("file.name must be a plain file name")
        return cls(id=file_id, name=name, mime=mime, size=size)

    def describe(self) -> str:
        """``calendar.ics (1.2 kB)``: for chat."""
        return f"{self.name} ({human_size(self.size)})"


def human_size(size: int) -> str:
    """``523 bytes``, ``1.2 kB``, ``8.4 MB`` (decimal units, as platforms show them)."""
    if size < 1000:
        return f"{size} byte{'' if size == 1 else 's'}"
    for unit in ("kB", "MB", "GB"):
        size_f = size / 1000
        if size_f < 1000 or unit == "GB":
            return f"{size_f:.1f} {unit}"
        size = int(size_f)
    return f"{size} bytes"  # pragma: no cover - the loop always returns


@dataclass(frozen=True, kw_only=True)
class OutgoingMessage:
    """Something the bot says (the ``data`` of ``rosey.chat.<platform>.send``).

    Exactly one of ``channel`` and ``private_to`` (a user id) names the destination.
    ``reply_to`` (a platform message id) and ``thread_id`` are honoured where the platform has
    them and ignored elsewhere. ``in_reply_to`` is the id of the Rosey event being answered (for
    the console and tests). ``file``, when set, is a file to send with ``text`` as its caption
    (see :class:`FileRef`; the adapter base fetches it).
    """

    text: str
    channel: str | None = None
    private_to: str | None = None
    reply_to: str | None = None
    thread_id: str | None = None
    in_reply_to: str | None = None
    kind: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    file: FileRef | None = None

    def __post_init__(self) -> None:
        if (self.channel is None) == (self.private_to is None):
            raise ValueError("an outgoing message needs exactly one of channel and private_to")

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"text": self.text}
        for name in ("channel", "private_to", "reply_to", "thread_id", "in_reply_to", "kind"):
            value = getattr(self, name)
            if value is not None:
                wire[name] = value
        if self.file is not None:
            wire["file"] = self.file.to_wire()
        return wire

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> OutgoingMessage:
        channel = _optional_id(raw.get("channel"))
        private_to = _optional_id(raw.get("private_to"))
        if (channel is None) == (private_to is None):
            raise MalformedEvent("an outgoing message needs exactly one of channel and private_to")
        return cls(
            text=clean_text(raw.get("text"), max_chars=MAX_OUTGOING_CHARS),
            channel=channel,
            private_to=private_to,
            reply_to=_optional_id(raw.get("reply_to")),
            thread_id=_optional_id(raw.get("thread_id")),
            in_reply_to=_optional_id(raw.get("in_reply_to")),
            kind=_optional_id(raw.get("kind")),
            file=FileRef.from_wire(raw["file"]) if raw.get("file") is not None else None,
        )


def _fits(piece: str, max_bytes: int | None, max_chars: int | None) -> bool:
    if max_chars is not None and len(piece) > max_chars:
        return False
    return max_bytes is None or len(piece.encode("utf-8")) <= max_bytes


def _cut(line: str, max_bytes: int | None, max_chars: int | None) -> tuple[str, str]:
    """The longest head of ``line`` that fits (at a space when one is in its second half)."""
    low, high = 1, len(line)
    while low < high:  # the longest prefix that fits, by code points (never inside a character)
        middle = (low + high + 1) // 2
        if _fits(line[:middle], max_bytes, max_chars):
            low = middle
        else:
            high = middle - 1
    end = low
    # Never split a base character from its combining marks (é as e + U+0301).
    while 1 < end < len(line) and unicodedata.combining(line[end]):
        end -= 1
    space = line.rfind(" ", 0, end + 1)
    if end < len(line) and space > end // 2:
        return line[:space], line[space + 1 :]
    return line[:end], line[end:]


def split_text(
    text: str,
    *,
    max_bytes: int | None = None,
    max_chars: int | None = None,
    newlines: bool = False,
) -> list[str]:
    """Split ``text`` into pieces that each fit ``max_bytes`` (UTF-8) and ``max_chars``.

    With ``newlines=False`` (IRC, CyTube) every line becomes its own piece and empty lines are
    dropped; with ``newlines=True`` (Matrix) lines are packed together while they fit. Pieces
    break at a space when one is near the end, else between characters, never inside a UTF-8
    sequence or between a character and its combining marks. Nothing is lost but the spaces
    at the breaks.
    """
    if max_bytes is not None and max_bytes < 4:
        raise ValueError("max_bytes must be at least 4 (one UTF-8 character)")
    if max_chars is not None and max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    lines: Iterable[str] = text.split("\n")
    pieces: list[str] = []
    for line in lines:
        line = line.rstrip("\r")
        if not newlines and not line.strip():
            continue
        while not _fits(line, max_bytes, max_chars):
            head, line = _cut(line, max_bytes, max_chars)
            if head:
                pieces.append(head)
        if newlines and pieces and _fits(f"{pieces[-1]}\n{line}", max_bytes, max_chars):
            pieces[-1] = f"{pieces[-1]}\n{line}"
        elif line or newlines:
            pieces.append(line)
    if newlines:
        while pieces and not pieces[-1].strip():
            pieces.pop()
    return pieces
