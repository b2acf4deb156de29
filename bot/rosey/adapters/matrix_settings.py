"""The Matrix adapter's settings (``[adapters.NAME]`` with ``type = "matrix"``), checked once.

Keys (secrets, ``access_token`` or ``password``, come separately)::

    homeserver = "https://matrix.example.org"   # client-server API base URL
    user = "@rosey:example.org"                 # the bot's full user id
    rooms = ["#general:example.org", "!abc:example.org"]   # joined at every start
    device_name = "Rosey"                       # display name of the device a password login makes
    auto_join = ["example.org", "@alice:example.org", "#ops:example.org"]
                                                # who may invite the bot (default: nobody but `rooms`)
    markdown = true                             # replies rendered as HTML too
    notice = true                               # say things as m.notice (bots' convention) not m.text
    catchup_max_age = 300                       # seconds: missed messages older than this are skipped
    encrypted_notice = true                     # tell an encrypted room, once, that it is not read

Plugin-process side: the standard library and ``core`` only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.rosey.core.chat import Role
from bot.rosey.errors import ConfigError

__all__ = ["MatrixSettings", "localpart", "roles_for_level", "server_of"]

_USER_ID = re.compile(r"^@[^:\s]+:[^\s]+$")
_ROOM_REF = re.compile(r"^[!#][^\s]+$")


def roles_for_level(level: int) -> tuple[Role, ...]:
    """A Matrix power level as Rosey roles: >= 100 admin, >= 50 op, > 0 voice."""
    if level >= 100:
        return (Role.ADMIN,)
    if level >= 50:
        return (Role.OP,)
    if level > 0:
        return (Role.VOICE,)
    return ()


def server_of(matrix_id: str) -> str:
    """``"@alice:example.org"`` -> ``"example.org"`` (empty for an id without a server part)."""
    _, _, server = matrix_id.partition(":")
    return server


def localpart(user_id: str) -> str:
    return user_id[1:].partition(":")[0] if user_id.startswith("@") else user_id


@dataclass(frozen=True, kw_only=True)
class MatrixSettings:
    homeserver: str
    user: str
    rooms: tuple[str, ...] = ()
    device_name: str = "Rosey"
    auto_join: tuple[str, ...] = ()
    markdown: bool = True
    notice: bool = True
    catchup_max_age: float = 300.0
    encrypted_notice: bool = True

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^\s/]+", self.homeserver):
            raise _bad("homeserver", f"must be an http(s) URL, got {self.homeserver!r}")
        if not _USER_ID.match(self.user):
            raise _bad("user", f"must be a full user id like '@rosey:example.org', got {self.user!r}")
        for room in self.rooms:
            if not _ROOM_REF.match(room):
                raise _bad("rooms", f"{room!r} is neither a room id (!...) nor an alias (#...)")
        for entry in self.auto_join:
            if not entry or any(c.isspace() for c in entry):
                raise _bad("auto_join", f"{entry!r} is not a room, user or server name")
        if self.catchup_max_age < 0:
            raise _bad("catchup_max_age", "must not be negative")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> MatrixSettings:
        """Read ``self.settings``; raises :class:`ConfigError` naming the key."""
        if not raw.get("homeserver"):
            raise _bad("homeserver", "is required (the homeserver's URL)")
        if not raw.get("user"):
            raise _bad("user", "is required (the bot's user id, '@rosey:example.org')")
        return cls(
            homeserver=str(raw["homeserver"]).rstrip("/"),
            user=str(raw["user"]),
            rooms=_strings(raw.get("rooms", ()), "rooms"),
            device_name=str(raw.get("device_name") or "Rosey"),
            auto_join=_strings(raw.get("auto_join", ()), "auto_join"),
            markdown=_bool(raw.get("markdown", True), "markdown"),
            notice=_bool(raw.get("notice", True), "notice"),
            catchup_max_age=_number(raw.get("catchup_max_age", 300.0), "catchup_max_age"),
            encrypted_notice=_bool(raw.get("encrypted_notice", True), "encrypted_notice"),
        )

    def auto_join_decision(
        self, *, room_id: str, inviter: str, room_aliases: Iterable[str], configured: bool
    ) -> str | None:
        """The allow-list entry that lets ``inviter`` bring the bot into ``room_id``, or None.

        Entries: ``*`` (anyone), a room id ``!...``, an alias ``#...`` (``room_aliases`` must hold
        what the directory resolved, not what the invite claims), a user ``@...`` (invites from
        them), or a server name (invites from its users). A room listed in ``rooms`` is always
        accepted.
        """
        if configured:
            return "rooms"
        aliases = set(room_aliases)
        for entry in self.auto_join:
            if entry == "*":
                return entry
            if entry.startswith("!"):
                if entry == room_id:
                    return entry
            elif entry.startswith("#"):
                if entry in aliases:
                    return entry
            elif entry.startswith("@"):
                if entry == inviter:
                    return entry
            elif entry.lstrip(":") == server_of(inviter):
                return entry
        return None


def _bad(key: str, reason: str) -> ConfigError:
    return ConfigError(f"matrix adapter: {key} {reason}", key=key)


def _strings(value: object, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _bad(key, "must be a list of strings")
    return tuple(value)


def _bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(key, f"must be true or false, got {value!r}")
    return value


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(key, f"must be a number, got {value!r}")
    return float(value)
