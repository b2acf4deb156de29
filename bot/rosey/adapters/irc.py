"""Rosey on IRC: one network per adapter process, through pydle 1.2.

Why pydle: it is an asyncio IRC client that is maintained (1.2 runs on Python 3.11; ``bottom``
3.x needs a newer Python and 2.2 breaks on 3.11), speaks IRCv3 capability negotiation (CAP LS
302, multi-prefix, message-tags, chghost...) and ISUPPORT (PREFIX, CHANTYPES, CASEMAPPING), and
keeps channel membership and prefix modes, which is where roles come from. ``irc3`` is a plugin
framework around its own loop and decorators, more than an adapter needs.

What this module adds to pydle, and why:

* **One reconnect loop.** pydle's own (``RECONNECT_ON_ERROR``) is off; a session is one pydle
  client from connect to disconnect, and :class:`~bot.rosey.adapters.chat_adapter.ChatAdapter`
  reconnects with backoff. Every way a connection ends (EOF, ``ERROR``, a socket error pydle's
  read loop would die on, a ping timeout) resolves the session's ``ended`` future.
* **SASL PLAIN** is done here (pydle's needs the ``pure-sasl`` package and schedules a
  coroutine with ``call_later``); a failure is logged and registration goes on without it.
* **Lines read in order.** pydle starts a task per received line; here each line is handled
  before the next, so a JOIN is known before the message that follows it.
* **The 512-byte line** is counted with the prefix the server adds (see ``irc_protocol``), per
  target; nothing in a line can be a newline (each line of a reply is its own PRIVMSG).
* **No secret in logs:** PASS, AUTHENTICATE and NickServ IDENTIFY are redacted in debug output.

Inbound: a PRIVMSG to a channel -> MESSAGE; to the bot's nick -> PRIVATE_MESSAGE (channel = the
sender's nick); JOIN -> USER_JOIN; PART, KICK, QUIT -> USER_LEAVE. NOTICEs are never commands
(only logged), CTCP is ignored except VERSION and PING, answered at most once every few seconds.
The bot's own lines are never emitted. Roles: +v voice, +h/+o op, +a/+q admin, in the channel
the message came from; a private message carries no role (channel modes do not travel).

Plugin-process side: imports only the standard library, ``core``, the adapter base and pydle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, ClassVar

import pydle  # type: ignore[import-untyped]

from bot.rosey.adapters.chat_adapter import ChatAdapter
from bot.rosey.adapters.irc_protocol import (
    ROLE_BY_MODE,
    IrcSettings,
    fallback_nicks,
    redact,
    sasl_plain_chunks,
    strip_formatting,
    text_budget,
    valid_target,
)
from bot.rosey.adapters.outbox import DeliveryFailed, Pacer
from bot.rosey.core.chat import ChatEventType, ChatUser, OutgoingMessage, Role, split_text

__all__ = ["IrcAdapter"]

logger = logging.getLogger(__name__)

#: Seconds for TCP + TLS, for registration (001 .. end of MOTD), and for the JOINs to be answered.
CONNECT_TIMEOUT = 30.0
REGISTER_TIMEOUT = 60.0
JOIN_TIMEOUT = 15.0
#: Wait for NickServ to confirm an IDENTIFY (900 or its NOTICE) before joining.
NICKSERV_WAIT = 10.0
VERSION_REPLY = "Rosey chat bot (pydle)"
# Numerics that refuse a JOIN: no such channel, too many channels, full, invite only, banned,
# bad key, needs a registered nick, cannot join (various servers).
_JOIN_REFUSALS = frozenset({403, 405, 471, 473, 474, 475, 477, 479, 489, 520})


class _Client(pydle.Client):  # type: ignore[misc]
    """One connection (one session); talks to its adapter, never reconnects by itself."""

    RECONNECT_ON_ERROR = False
    READ_TIMEOUT = 120  # silence for this long -> PING; no answer in as long -> the session ends

    def __init__(self, adapter: IrcAdapter, config: IrcSettings, password: str | None) -> None:
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
                future = self._join_future(channel)
                if not future.done():
                    future.set_result(None)
            else:
                await self.adapter.relay(ChatEventType.USER_JOIN, channel, nick)

    def _join_future(self, channel: str) -> asyncio.Future[str | None]:
        key = self.normalize(channel)
        if key not in self.joins:
            self.joins[key] = asyncio.get_running_loop().create_future()
        return self.joins[key]

    async def on_raw(self, message: Any) -> None:
        if message.command in _JOIN_REFUSALS and len(message.params) >= 2:
            future = self.joins.get(self.normalize(message.params[1]))
            if future is not None and not future.done():
                future.set_result(f"{message.command} {message.params[-1]}")
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


class IrcAdapter(ChatAdapter):
    """An IRC network: ``[adapters.NAME] type = "irc"`` (see ``irc_protocol.IrcSettings``)."""

    platform_type: ClassVar[str] = "irc"
    keeps_newlines: ClassVar[bool] = False
    # Pace: 5 lines at once, then 1 per second. Libera's ircd (solanum) processes a burst of 5
    # lines then 2 per second and disconnects ("Excess Flood") past 20 unprocessed lines; ngircd
    # processes about 3 commands per second per user (measured); RFC 1459 §8.10's strictest model
    # is 5 then one per 2 s (set rate = 0.5 on such a network).
    default_rate: ClassVar[float] = 1.0
    default_burst: ClassVar[int] = 5

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = IrcSettings.from_settings(self.settings, has_password=bool(self.secret("password")))
        self._client: _Client | None = None
        self._rejoins: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ session

    async def run_session(self) -> None:
        config = self.config
        password = self.secret("password")
        client = _Client(self, config, password if config.auth == "sasl" else None)
        self._client = client
        try:
            await asyncio.wait_for(
                client.connect(
                    config.server,
                    config.port,
                    tls=config.tls,
                    tls_verify=config.tls_verify,
                    password=password if config.auth == "server" else None,
                ),
                CONNECT_TIMEOUT,
            )
            if not await _first(client.ready.wait(), client.ended, timeout=REGISTER_TIMEOUT):
                raise TimeoutError(f"not registered with {config.server} after {REGISTER_TIMEOUT:g} s")
            logger.info(
                "%s: registered on %s:%d as %s", self.name, config.server, config.port, client.nickname
            )
            if config.auth == "nickserv" and password:
                await client.send_line(f"PRIVMSG {config.nickserv} :IDENTIFY {config.account} {password}")
                await _first(client.logged_in.wait(), client.ended, timeout=NICKSERV_WAIT)
            await self._join_all(client)
            if client.ended.done():
                raise ConnectionError(client.ended.result())
            self.set_connected(True)
            why = await client.ended
            logger.info("%s: session ended: %s", self.name, why)
        finally:
            self.set_connected(False)
            self._client = None
            if client.connected:
                with contextlib.suppress(Exception):
                    await client.disconnect(expected=True)

    async def _join_all(self, client: _Client) -> None:
        for channel, key in self.config.channels:
            client._join_future(channel)
            await client.send_line(f"JOIN {channel} {key}" if key else f"JOIN {channel}")
        waiting = {client._join_future(channel) for channel, _ in self.config.channels}
        if waiting:
            await _first(asyncio.wait(waiting), client.ended, timeout=JOIN_TIMEOUT)
        for channel, _ in self.config.channels:
            result = client._join_future(channel)
            if not result.done():
                logger.warning("%s: no answer to JOIN %s yet", self.name, channel)
            elif result.result() is not None:
                logger.error("%s: cannot join %s: %s", self.name, channel, result.result())

    def schedule_rejoin(self, client: _Client, channel: str) -> None:
        if not self.config.rejoin_on_kick:
            return
        keys = {client.normalize(name): key for name, key in self.config.channels}
        key = keys.get(client.normalize(channel))

        async def rejoin() -> None:
            await asyncio.sleep(self.config.rejoin_delay)  # no kick/rejoin war
            if client is self._client and client.connected and not client.in_channel(channel):
                client.joins.pop(client.normalize(channel), None)
                await client.send_line(f"JOIN {channel} {key}" if key else f"JOIN {channel}")

        task = asyncio.create_task(rejoin())
        self._rejoins.add(task)
        task.add_done_callback(self._rejoins.discard)

    async def close_session(self) -> None:
        client = self._client
        for task in list(self._rejoins):
            task.cancel()
        if client is not None and client.connected:
            with contextlib.suppress(Exception):
                await client.quit("Rosey is stopping")

    # ------------------------------------------------------------------ inbound

    async def relay(
        self,
        kind: ChatEventType,
        channel: str,
        nick: str | None,
        text: str = "",
        *,
        message_id: str | None = None,
    ) -> None:
        """Publish one platform event; a NATS hiccup is logged, never fatal to the session."""
        client = self._client
        if not nick or client is None:
            return
        roles = client.roles(channel, nick) if kind is not ChatEventType.PRIVATE_MESSAGE else ()
        user = ChatUser(id=nick, name=nick, roles=roles)
        try:
            await self.emit(kind, channel=channel, user=user, text=text, message_id=message_id)
        except Exception as exc:
            logger.warning("%s: could not publish a %s event: %s", self.name, kind.value, exc)

    # ------------------------------------------------------------------ outbound

    def _budget(self, target: str) -> int:
        client = self._client
        if client is not None and client.registered:
            nick = client.nickname
            user, host = client.user_mask or (None, None)
        else:  # not connected yet: count the longest fallback nick and an unknown mask
            nick, user, host = fallback_nicks(self.config.nick)[-1], None, None
        return text_budget(nick=nick, user=user, host=host, command="PRIVMSG", target=target)

    def split(self, message: OutgoingMessage) -> list[OutgoingMessage]:
        target = message.channel or message.private_to or ""
        budget = max(16, self._budget(target))
        pieces = split_text(message.text, max_bytes=budget, newlines=False)
        return [
            OutgoingMessage(
                text=piece,
                channel=message.channel,
                private_to=message.private_to,
                in_reply_to=message.in_reply_to,
                kind=message.kind,
            )
            for piece in pieces
        ]

    async def deliver(self, message: OutgoingMessage) -> None:
        client = self._client
        if client is None or not client.connected or not client.registered:
            raise ConnectionError("not connected to the IRC server")
        target = message.channel or message.private_to or ""
        if not valid_target(target):
            raise DeliveryFailed(f"{target!r} is not an IRC channel or nick")
        if client.is_channel(target) and not client.in_channel(target):
            raise DeliveryFailed(f"not in {target}")
        # Split again: the nick or the displayed host may have changed since split().
        for line in split_text(message.text, max_bytes=max(16, self._budget(target)), newlines=False):
            await client.send_line(f"PRIVMSG {target} :{line}")


async def _first(awaitable: Any, ended: asyncio.Future[str], *, timeout: float) -> bool:
    """Wait for ``awaitable`` unless the session ends or ``timeout`` passes; True if it finished."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
    return task in done


if __name__ == "__main__":  # the launcher runs the adapter's module like a plugin file
    from bot.rosey.plugins.plugin_interface import run_plugin

    run_plugin(IrcAdapter)
