"""Rosey on IRC: one network per adapter process, through pydle 1.2.

Why pydle: it is an asyncio IRC client that is maintained (1.2 runs on Python 3.11; ``bottom``
3.x needs a newer Python and 2.2 breaks on 3.11), speaks IRCv3 capability negotiation (CAP LS
302, multi-prefix, message-tags, chghost...) and ISUPPORT (PREFIX, CHANTYPES, CASEMAPPING), and
keeps channel membership and prefix modes, which is where roles come from. ``irc3`` is a plugin
framework around its own loop and decorators, more than an adapter needs.

How a session goes: connect (TLS unless ``tls = false``, verified unless ``tls_verify =
false``), register (server password, SASL PLAIN or neither; ``nick_``, ``nick__``... while the
nick is taken, and the nick is taken back when its holder leaves), NickServ IDENTIFY if asked,
JOIN every channel (with its key), then relay until the connection ends; the base class
reconnects with backoff (pydle's own reconnect is off: one loop, see
:mod:`bot.rosey.adapters.irc_client`), and the next session joins again. A KICK is answered by
a JOIN after ``rejoin_delay`` seconds.

Outbound, a reply is cut so that every line fits the 512 bytes the server relays, prefix
``:nick!user@host PRIVMSG target :`` included (``irc_protocol.text_budget``, per target, with
the mask the server showed us), at character boundaries; each line of a reply is its own
PRIVMSG. Pace: 5 lines at once, then 1 per second (settings ``burst``, ``rate``).

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

from bot.rosey.adapters.chat_adapter import ChatAdapter
from bot.rosey.adapters.irc_client import IrcClient
from bot.rosey.adapters.irc_protocol import IrcSettings, fallback_nicks, text_budget, valid_target
from bot.rosey.adapters.outbox import DeliveryFailed
from bot.rosey.core.chat import ChatEventType, ChatUser, OutgoingMessage, split_text

__all__ = ["IrcAdapter"]

logger = logging.getLogger(__name__)

#: Seconds for TCP + TLS, for registration (001 .. end of MOTD), and for the JOINs to be answered.
CONNECT_TIMEOUT = 30.0
REGISTER_TIMEOUT = 60.0
JOIN_TIMEOUT = 15.0
#: Wait for NickServ to confirm an IDENTIFY (900 or its NOTICE) before joining.
NICKSERV_WAIT = 10.0


class IrcAdapter(ChatAdapter):
    """An IRC network: ``[adapters.NAME] type = "irc"`` (see ``irc_protocol.IrcSettings``)."""

    platform_type: ClassVar[str] = "irc"
    keeps_newlines: ClassVar[bool] = False
    # Pace: 5 lines at once, then 1 per second. Solanum (Libera) parses a burst of
    # client_flood_burst_max lines, then client_flood_message_num per second, and disconnects
    # ("Excess Flood") past client_flood_max_lines unparsed: 5, 2 and 20 in the configs seen in
    # public repositories. ngircd parses about 3 commands per second per user (measured). RFC 1459
    # §8.10's model is stricter, 5 then one per 2 s: set rate = 0.5 on such a network.
    default_rate: ClassVar[float] = 1.0
    default_burst: ClassVar[int] = 5

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = IrcSettings.from_settings(self.settings, has_password=bool(self.secret("password")))
        self._client: IrcClient | None = None
        self._rejoins: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ session

    async def run_session(self) -> None:
        config = self.config
        password = self.secret("password")
        client = IrcClient(self, config, password if config.auth == "sasl" else None)
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

    async def _join_all(self, client: IrcClient) -> None:
        for channel, key in self.config.channels:
            client.join_future(channel)
            await client.send_line(f"JOIN {channel} {key}" if key else f"JOIN {channel}")
        waiting = {client.join_future(channel) for channel, _ in self.config.channels}
        if waiting:
            await _first(asyncio.wait(waiting), client.ended, timeout=JOIN_TIMEOUT)
        for channel, _ in self.config.channels:
            result = client.join_future(channel)
            if not result.done():
                logger.warning("%s: no answer to JOIN %s yet", self.name, channel)
            elif result.result() is not None:
                logger.error("%s: cannot join %s: %s", self.name, channel, result.result())

    def schedule_rejoin(self, client: IrcClient, channel: str) -> None:
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
