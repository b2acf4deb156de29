"""IRC facts the adapter needs, without a connection: settings, line budgets, roles, SASL PLAIN.

Kept apart from :mod:`bot.rosey.adapters.irc` (which holds the pydle client) so that each rule
is one small pure function with its reason next to it.

The 512-byte rule (RFC 1459 §2.3, RFC 2812 §2.3): a line is at most 512 bytes *including* the
trailing CR LF, and the limit applies to the line the server relays to the other clients, which
carries the sender's full prefix: ``:nick!user@host PRIVMSG #chan :text``. A client that fills
its own ``PRIVMSG #chan :text`` up to 510 bytes therefore has its tail cut by the server (or, on
ngircd, gets disconnected for a line over the limit). :func:`text_budget` computes what is left
for the text once that prefix is counted, in bytes of UTF-8.

Plugin-process side: imports only the standard library, ``core`` and ``errors``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.rosey.core.chat import Role
from bot.rosey.errors import ConfigError

__all__ = [
    "AUTH_MODES",
    "ROLE_BY_MODE",
    "IrcSettings",
    "fallback_nicks",
    "redact",
    "sasl_plain_chunks",
    "strip_formatting",
    "text_budget",
    "valid_target",
]

#: ``auth = ...``: how the password is used.
AUTH_MODES = ("sasl", "server", "nickserv")
#: Bytes of a line, CR LF included (RFC 1459 §2.3).
LINE_BYTES = 512
#: The longest host a server shows (HOSTLEN 63 in ircu, hybrid, solanum, ngircd, InspIRCd).
MAX_HOST = 63
#: Channel prefix modes -> role (``core/chat.Role``): +v voice, +h halfop and +o op, +a admin, +q owner.
ROLE_BY_MODE: Mapping[str, Role] = {
    "v": Role.VOICE,
    "h": Role.OP,
    "o": Role.OP,
    "a": Role.ADMIN,
    "q": Role.ADMIN,
}
#: SASL sends its payload in AUTHENTICATE lines of at most 400 bytes of base64 (IRCv3 sasl-3.1).
SASL_CHUNK = 400

# mIRC formatting: colour (\x03 with up to two fg,bg digit pairs), hex colour (\x04 RRGGBB),
# bold, italics, underline, strike, monospace, reverse and reset.
_FORMATTING = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
_TARGET_FORBIDDEN = re.compile(r"[\s,\x00-\x1f\x7f]")
_SECRET_COMMANDS = ("PASS", "AUTHENTICATE", "OPER")


@dataclass(frozen=True, kw_only=True)
class IrcSettings:
    """The ``[adapters.NAME]`` table of an ``type = "irc"`` adapter, checked."""

    server: str
    port: int
    tls: bool = True
    tls_verify: bool = True
    nick: str
    username: str
    realname: str = "Rosey"
    channels: tuple[tuple[str, str | None], ...] = ()
    auth: str | None = None
    account: str = ""  # the services account SASL and IDENTIFY log in to (default: the nick)
    nickserv: str = "NickServ"
    answer_ctcp: bool = True
    rejoin_on_kick: bool = True
    rejoin_delay: float = 5.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, has_password: bool) -> IrcSettings:
        """Read ``settings``; raises :class:`~bot.rosey.errors.ConfigError` naming the key."""
        server = _text(settings, "server", required=True)
        nick = _text(settings, "nick", required=True)
        if not valid_target(nick) or nick[0] in "#&:" or nick[0].isdigit():
            raise ConfigError(f"nick: {nick!r} is not a valid IRC nickname", key="nick")
        tls = _flag(settings, "tls", True)
        port_value = settings.get("port", 6697 if tls else 6667)
        if isinstance(port_value, bool) or not isinstance(port_value, int) or not 0 < port_value < 65536:
            raise ConfigError(f"port: expected a TCP port number, got {port_value!r}", key="port")
        auth = settings.get("auth")
        if auth is not None and auth not in AUTH_MODES:
            raise ConfigError(f"auth: {auth!r} is not one of {', '.join(AUTH_MODES)}", key="auth")
        if auth is not None and not has_password:
            raise ConfigError(f'auth = "{auth}" needs a password (password_env or password_file)', key="auth")
        if auth is None and has_password:
            raise ConfigError(
                'a password is configured but not how to use it: set auth = "sasl", "server" or "nickserv"',
                key="auth",
            )
        raw_channels = settings.get("channels", [])
        if not isinstance(raw_channels, list | tuple) or not all(isinstance(c, str) for c in raw_channels):
            raise ConfigError(
                'channels: expected a list of names like ["#rosey", "#secret key"]', key="channels"
            )
        channels: list[tuple[str, str | None]] = []
        for entry in raw_channels:
            name, _, key = entry.strip().partition(" ")
            key = key.strip()
            if not name or name[0] not in "#&+!" or not valid_target(name) or " " in key:
                raise ConfigError(f"channels: {entry!r} is not '#channel' or '#channel key'", key="channels")
            channels.append((name, key or None))
        username = _text(settings, "username") or nick
        if not valid_target(username) or "@" in username:
            raise ConfigError(f"username: {username!r} is not a valid IRC user name", key="username")
        return cls(
            server=server,
            port=port_value,
            tls=tls,
            tls_verify=_flag(settings, "tls_verify", True),
            nick=nick,
            username=username,
            realname=_text(settings, "realname") or "Rosey",
            channels=tuple(channels),
            auth=auth,
            account=_text(settings, "account") or nick,
            nickserv=_text(settings, "nickserv") or "NickServ",
            answer_ctcp=_flag(settings, "answer_ctcp", True),
            rejoin_on_kick=_flag(settings, "rejoin_on_kick", True),
            rejoin_delay=_seconds(settings, "rejoin_delay", 5.0),
        )


def _text(settings: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = settings.get(key)
    if value is None or value == "":
        if required:
            raise ConfigError(f"{key}: required for an IRC adapter", key=key)
        return ""
    if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
        raise ConfigError(f"{key}: expected a one-line string, got {value!r}", key=key)
    return value.strip()


def _flag(settings: Mapping[str, Any], key: str, default: bool) -> bool:
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}", key=key)
    return value


def _seconds(settings: Mapping[str, Any], key: str, default: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key}: expected a number of seconds, got {value!r}", key=key)
    return float(value)


def fallback_nicks(nick: str, count: int = 4) -> list[str]:
    """The nicks tried when ``nick`` is taken: ``nick_``, ``nick__``, ..."""
    return [nick + "_" * n for n in range(1, count + 1)]


def text_budget(*, nick: str, user: str | None, host: str | None, command: str, target: str) -> int:
    """Bytes of UTF-8 text that fit in one ``command`` to ``target`` once the server adds our
    prefix. An unknown ``user``/``host`` (before the server showed us our own mask) counts as
    the longest the server may use: ``~`` + 10 for the user, 63 for the host."""
    user = user if user is not None else "~" + "u" * 10
    host = host if host is not None else "h" * MAX_HOST
    prefix = f":{nick}!{user}@{host} {command} {target} :"
    return LINE_BYTES - 2 - len(prefix.encode("utf-8"))


def valid_target(target: str) -> bool:
    """Whether ``target`` can stand as one IRC parameter (no space, comma, control character)."""
    return bool(target) and not target.startswith(":") and not _TARGET_FORBIDDEN.search(target)


def strip_formatting(text: str) -> str:
    """``text`` without mIRC colour and style codes (so ``\\x0304!echo`` is ``!echo``)."""
    return _FORMATTING.sub("", text)


def sasl_plain_chunks(user: str, password: str) -> list[str]:
    """``AUTHENTICATE`` arguments for SASL PLAIN (RFC 4616: authzid NUL authcid NUL passwd), in
    400-byte pieces; a payload that is an exact multiple of 400 ends with ``+`` (IRCv3 sasl-3.1)."""
    payload = base64.b64encode(f"{user}\0{user}\0{password}".encode()).decode("ascii")
    chunks = [payload[i : i + SASL_CHUNK] for i in range(0, len(payload), SASL_CHUNK)]
    if len(payload) % SASL_CHUNK == 0:
        chunks.append("+")
    return chunks


def redact(line: str) -> str:
    """A line as it may be logged: the arguments of PASS / AUTHENTICATE and NickServ IDENTIFY hidden."""
    command, _, rest = line.partition(" ")
    if command.upper() in _SECRET_COMMANDS and rest and rest not in ("PLAIN", "+", "*"):
        return f"{command} <redacted>"
    if command.upper() == "PRIVMSG" and re.search(
        r":\s*(IDENTIFY|REGAIN|GHOST|RELEASE)\b", rest, re.IGNORECASE
    ):
        target = rest.split(" ", 1)[0]
        return f"{command} {target} :<redacted>"
    return line
