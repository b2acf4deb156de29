"""One IRC connection of the IRC adapter: a pydle client that never reconnects by itself.

A session (see :mod:`bot.rosey.adapters.irc`) is one :class:`IrcClient` from connect to
disconnect. What it changes in pydle, and why:

* Every way the connection ends (EOF, ``ERROR``, a socket error that pydle's read loop would die
  on silently, a ping timeout) resolves ``ended``; pydle's own reconnect is off.
* Lines are handled one after the other (pydle starts a task per line), so a JOIN is known
  before the message that follows it; nothing in a handler waits for the server (pydle's
  WHOIS of every nick it sees is not sent: unpaced, it floods a big channel's server).
* SASL PLAIN is done here (pydle's needs ``pure-sasl`` and schedules a coroutine with
  ``call_later``); PASS, AUTHENTICATE and NickServ IDENTIFY are redacted in debug logs.
* The bot's own lines are never events (``echo-message`` is not requested, and a line from our
  nick is dropped anyway); NOTICEs never are; CTCP only gets VERSION and PING answered, at most
  three at once then one per 5 s.

Plugin-process side: imports only the standard library, ``core``, the adapter package and pydle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import pydle  # type: ignore[import-untyped]

from bot.rosey.adapters.irc_protocol import (
    ROLE_BY_MODE,
    IrcSettings,
    fallback_nicks,
    redact,
    sasl_plain_chunks,
    strip_formatting,
    valid_target,
)
from bot.rosey.adapters.outbox import Pacer
from bot.rosey.core.chat import ChatEventType, Role

__all__ = ["IrcClient", "SessionOwner"]

logger = logging.getLogger(__name__)

VERSION_REPLY = "Rosey chat bot (pydle)"
# Numerics that refuse a JOIN: no such channel, too many channels, full, invite only, banned,
# bad key, needs a registered nick, cannot join (various servers).
_JOIN_REFUSALS = frozenset({403, 405, 471, 473, 474, 475, 477, 479, 489, 520})
# Numerics that refuse a PRIVMSG: no such nick/channel, cannot send to channel (+m, +n, banned),
# too many targets, no text.
_SEND_REFUSALS = frozenset({401, 404, 407, 412})


class SessionOwner(Protocol):
    """What a client needs of its adapter."""

    @property
    def name(self) -> str: ...

    async def relay(
        self,
        kind: ChatEventType,
        channel: str,
        nick: str | None,
        text: str = "",
        *,
        message_id: str | None = None,
    ) -> None: ...

    def schedule_rejoin(self, client: IrcClient, channel: str) -> None: ...


class IrcClient(pydle.Client):  # type: ignore[misc]
    """One connection (one session); talks to its adapter, never reconnects by itself."""

    RECONNECT_ON_ERROR = False
    READ_TIMEOUT = 120  # silence for this long -> PING; no answer in as long -> the session ends

    def __init__(self, adapter: SessionOwner, config: IrcSettings, password: str | None) -> None:
        super().__init__(
            config.nick,
            fallback_nicknames=fallback_nicks(config.nick),
            username=config.username,
            realname=config.realname,
        )
        self.adapter = adapter
        self.config = config
        self._password = password
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.ready = asyncio.Event()  # registered (end of MOTD)
        self.logged_in = asyncio.Event()  # SASL 903 / NickServ 900
        self.joins: dict[str, asyncio.Future[str | None]] = {}
        self.user_mask: tuple[str, str] | None = None  # our own user@host, as the server shows it
        self._ctcp_pacer = Pacer(rate=0.2, burst=3)
        self._sasl_timer: asyncio.TimerHandle | None = None
        self._background: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ connection plumbing

    def _finish(self, why: str) -> None:
        if not self.ended.done():
            self.ended.set_result(why)

    async def handle_forever(self) -> None:
        try:
            await super().handle_forever()
            why = "the server closed the connection"
        except Exception as exc:  # pydle's loop dies on socket errors without disconnecting
            why = f"{type(exc).__name__}: {exc}"
        finally:
            if self.connected:
                with contextlib.suppress(Exception):
                    await self.connection.disconnect()
        self._finish(why)

    async def on_disconnect(self, expected: bool) -> None:
        self._finish("disconnected" if expected else "the connection was lost")

    async def on_data(self, data: bytes) -> None:
        self._receive_buffer += data
        while self._has_message():
            try:
                message = self._parse_message()
            except Exception as exc:
                logger.warning("%s: unreadable line from the server skipped: %s", self.adapter.name, exc)
                continue
            await self.on_raw(message)  # in order; on_raw logs a failing handler itself

    async def on_data_error(self, exception: BaseException) -> None:
        logger.warning("%s: server error: %s", self.adapter.name, exception)
        await self.disconnect(expected=False)

    async def _send(self, line: str | bytes) -> None:
        if not isinstance(line, str | bytes):
            line = str(line)
        data = line.encode(self.encoding) if isinstance(line, str) else line
        if not self.connected:
            raise ConnectionError("not connected to the IRC server")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s >> %s", self.adapter.name, redact(data.decode(self.encoding, "replace").rstrip())
            )
        await self.connection.send(data)

    async def send_line(self, line: str) -> None:
        await self._send(line + "\r\n")

    async def whois(self, nickname: str) -> None:
        """Never sent: pydle would WHOIS every nick it sees on a server without WHOX (and on
        every rename), unpaced, which floods a big channel's server; and handlers run in line
        order here, so waiting for the answer inside one would wait forever."""
        return None

    async def on_unknown(self, message: Any) -> None:
        logger.debug("%s: unhandled %s %s", self.adapter.name, message.command, message.params)

    # ------------------------------------------------------------------ registration and auth

    async def on_capability_echo_message_available(self, value: object) -> bool:
        return False  # our own lines need not come back

    async def on_capability_sasl_available(self, value: object) -> bool:
        self._sasl_mechanisms = str(value).upper().split(",") if isinstance(value, str) and value else None
        return self.config.auth == "sasl" and bool(self._password)

    async def on_capability_sasl_enabled(self) -> Any:
        offered = self._sasl_mechanisms
        if offered and "PLAIN" not in offered:
            logger.error("%s: the server's SASL offers %s, not PLAIN", self.adapter.name, ",".join(offered))
            return pydle.CAPABILITY_FAILED
        await self.send_line("AUTHENTICATE PLAIN")
        self._sasl_timer = asyncio.get_running_loop().call_later(15.0, self._sasl_timeout)
        return pydle.CAPABILITY_NEGOTIATING

    def _sasl_timeout(self) -> None:
        logger.error("%s: SASL timed out; going on without it", self.adapter.name)
        self._background = asyncio.ensure_future(self._sasl_done(abort=True))

    async def _sasl_done(self, *, abort: bool = False) -> None:
        if self._sasl_timer is not None:
            self._sasl_timer.cancel()
            self._sasl_timer = None
        if "sasl" not in self._capabilities_negotiating:
            return
        if abort:
            with contextlib.suppress(ConnectionError):
                await self.send_line("AUTHENTICATE *")
        await self._capability_negotiated("sasl")

    async def on_raw_authenticate(self, message: Any) -> None:
        if message.params and message.params[0] == "+" and self._password:
            for chunk in sasl_plain_chunks(self.config.account, self._password):
                await self.send_line(f"AUTHENTICATE {chunk}")

    async def on_raw_900(self, message: Any) -> None:
        logger.info("%s: logged in: %s", self.adapter.name, message.params[-1])
        self.logged_in.set()

    async def on_raw_903(self, message: Any) -> None:
        logger.info("%s: SASL authentication succeeded", self.adapter.name)
        self.logged_in.set()
        await self._sasl_done()

    async def _sasl_failed(self, message: Any) -> None:
        logger.error(
            "%s: SASL authentication failed (%s %s); going on without it: check the password",
            self.adapter.name,
            message.command,
            message.params[-1] if message.params else "",
        )
        await self._sasl_done()

    on_raw_902 = on_raw_904 = on_raw_905 = on_raw_906 = on_raw_908 = _sasl_failed

    async def on_raw_464(self, message: Any) -> None:
        logger.error("%s: the server refused the password (464 %s)", self.adapter.name, message.params[-1:])
        self._finish("the server refused the password")
        await self.disconnect(expected=True)

    async def on_connect(self) -> None:
        await super().on_connect()
        self.ready.set()

    # ------------------------------------------------------------------ channels and our mask

    def _is_me(self, nick: str | None) -> bool:
        return bool(nick) and self.is_same_nick(self.nickname, nick)

    async def on_raw_join(self, message: Any) -> None:
        nick, meta = self._parse_user(message.source)
        if self._is_me(nick) and "username" in meta and "hostname" in meta:
            self.user_mask = (meta["username"], meta["hostname"])
        await super().on_raw_join(message)
        for channel in message.params[0].split(","):
            if self._is_me(nick):
                future = self.join_future(channel)
                if not future.done():
                    future.set_result(None)
            else:
                await self.adapter.relay(ChatEventType.USER_JOIN, channel, nick)

    def join_future(self, channel: str) -> asyncio.Future[str | None]:
        key = self.normalize(channel)
        if key not in self.joins:
            self.joins[key] = asyncio.get_running_loop().create_future()
        return self.joins[key]

    async def on_raw(self, message: Any) -> None:
        if message.command in _JOIN_REFUSALS and len(message.params) >= 2:
            future = self.joins.get(self.normalize(message.params[1]))
            if future is not None and not future.done():
                future.set_result(f"{message.command} {message.params[-1]}")
            else:  # a re-join after a KICK, or a JOIN nobody waits for any more
                logger.warning(
                    "%s: cannot join %s: %s", self.adapter.name, message.params[1], message.params[-1]
                )
        elif message.command in _SEND_REFUSALS and len(message.params) >= 2:
            logger.warning(
                "%s: the server refused a message to %s: %s (%s)",
                self.adapter.name,
                message.params[1],
                message.params[-1],
                message.command,
            )
        await super().on_raw(message)

    async def on_raw_396(self, message: Any) -> None:  # RPL_HOSTHIDDEN: our displayed host changed
        if self.user_mask is not None and len(message.params) >= 2:
            self.user_mask = (self.user_mask[0], message.params[1])

    async def on_raw_chghost(self, message: Any) -> None:
        nick, _ = self._parse_user(message.source)
        if self._is_me(nick) and len(message.params) >= 2:
            self.user_mask = (message.params[0], message.params[1])
        await super().on_raw_chghost(message)

    async def on_raw_part(self, message: Any) -> None:
        nick, _ = self._parse_user(message.source)
        await super().on_raw_part(message)
        if not self._is_me(nick):
            for channel in message.params[0].split(","):
                await self.adapter.relay(ChatEventType.USER_LEAVE, channel, nick)

    async def on_raw_kick(self, message: Any) -> None:
        await super().on_raw_kick(message)
        if len(message.params) < 2:
            return
        for channel in message.params[0].split(","):
            for target in message.params[1].split(","):
                if self._is_me(target):
                    logger.warning("%s: kicked from %s: %s", self.adapter.name, channel, message.params[2:])
                    self.adapter.schedule_rejoin(self, channel)
                else:
                    await self.adapter.relay(ChatEventType.USER_LEAVE, channel, target)

    async def on_raw_quit(self, message: Any) -> None:
        nick, _ = self._parse_user(message.source)
        shared = [name for name, state in self.channels.items() if nick in state["users"]]
        await super().on_raw_quit(message)
        if not self._is_me(nick):
            for channel in shared:
                await self.adapter.relay(ChatEventType.USER_LEAVE, channel, nick)
            await self._maybe_regain(nick)

    async def on_raw_nick(self, message: Any) -> None:
        old, _ = self._parse_user(message.source)
        await super().on_raw_nick(message)
        if not self._is_me(message.params[0]):
            await self._maybe_regain(old)

    async def _maybe_regain(self, freed: str | None) -> None:
        """The configured nick was freed (its holder quit or renamed): take it back."""
        wanted = self.config.nick
        if freed and self.registered and self.is_same_nick(freed, wanted) and not self._is_me(wanted):
            await self.send_line(f"NICK {wanted}")

    def roles(self, channel: str, nick: str) -> tuple[Role, ...]:
        if not self.in_channel(channel):
            return ()
        modes = self.channels[channel].get("modes", {})
        held = {
            role
            for mode, role in ROLE_BY_MODE.items()
            if any(self.is_same_nick(nick, n) for n in modes.get(mode) or ())
        }
        return tuple(sorted(held))

    # ------------------------------------------------------------------ messages

    async def on_raw_privmsg(self, message: Any) -> None:
        nick, meta = self._parse_user(message.source)
        if len(message.params) < 2 or not nick or self._is_me(nick):
            return  # the bot's own lines (echo-message, a bouncer) are never events
        target, text = message.params[0], message.params[1]
        await self._sync_user(nick, meta)
        if text.startswith("\x01"):
            await self._ctcp(nick, text)
            return
        text = strip_formatting(text)
        tags = getattr(message, "tags", None) or {}
        message_id = tags.get("msgid") if isinstance(tags.get("msgid"), str) else None
        if self.is_channel(target):
            await self.adapter.relay(ChatEventType.MESSAGE, target, nick, text, message_id=message_id)
        elif self._is_me(target):
            await self.adapter.relay(ChatEventType.PRIVATE_MESSAGE, nick, nick, text, message_id=message_id)

    async def _ctcp(self, nick: str, text: str) -> None:
        """Answer VERSION and PING (at most 3 at once, then one per 5 s); ignore everything else."""
        query, _, argument = text.strip("\x01").partition(" ")
        query = query.upper()
        if not self.config.answer_ctcp or query not in ("VERSION", "PING") or not valid_target(nick):
            return
        if self._ctcp_pacer.delay() > 0:
            return
        answer = VERSION_REPLY if query == "VERSION" else argument[:64].replace("\x01", "")
        await self.send_line(f"NOTICE {nick} :\x01{query} {answer}\x01".replace("\r", "").replace("\n", ""))

    async def on_raw_notice(self, message: Any) -> None:
        nick, _ = self._parse_user(message.source)
        if nick and self.is_same_nick(nick, self.config.nickserv) and len(message.params) >= 2:
            logger.info("%s: %s says: %s", self.adapter.name, nick, strip_formatting(message.params[1])[:300])
            if any(w in message.params[1].lower() for w in ("identified", "recognized", "logged in")):
                self.logged_in.set()
        # A NOTICE is never a command (RFC 1459 §4.4.2: never answered automatically).
