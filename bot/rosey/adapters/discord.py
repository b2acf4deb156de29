"""Rosey on Discord: one bot user per adapter process, through discord.py 2.x.

Why discord.py rather than hikari: both are maintained asyncio libraries with REST bucket
handling and gateway RESUME. discord.py is the one most Discord bot operators already know, is
fully typed (``py.typed``, mypy-clean here), needs only aiohttp (hikari adds attrs, colorlog
and multidict), and documents the two knobs an adapter needs: ``Route.BASE``
(the REST base) and the gateway URL. Its ``Client`` keeps the guild/role cache roles come from,
and ``Client.connect`` already does Discord's reconnect rules (RESUME on a dropped socket, a
fresh IDENTIFY after INVALID_SESSION, paced as the docs ask).

What this module adds, and why:

* **Where Discord is.** ``api_base`` (default ``https://discord.com/api/v10``) becomes
  ``discord.http.Route.BASE``; the gateway URL is asked of ``GET /gateway/bot`` (as Discord's
  docs say to) or given as ``gateway``, and becomes ``DiscordWebSocket.DEFAULT_GATEWAY``, which
  discord.py also falls back to after an invalidated session. Both are process-wide class
  attributes: harmless here, an adapter process holds one bot.
* **One session = one ``discord.Client``.** Inside a session discord.py reconnects and RESUMEs
  by itself (no event lost: the gateway replays what was missed); a session ends only on what
  discord.py will not retry (a refused token, close codes 4004/4010-4014), and then
  :class:`~bot.rosey.adapters.chat_adapter.ChatAdapter` starts a fresh client with backoff.
  Replies are held (``set_connected(False)``) from a gateway drop until READY or RESUMED.
* **Replies** go out over REST as Discord replies (``message_reference``, with
  ``fail_if_not_exists: false`` so a deleted command does not lose its answer) in the channel or
  thread the command came from; a private reply opens (and remembers) a DM channel. Replies never
  ping ``@everyone``, roles or users named in a plugin's text; only the author being answered.
* **Rate limits:** discord.py waits out 429s and pre-empts exhausted buckets from the
  ``X-RateLimit-*`` headers; the outbox in front of it paces at Discord's documented message rate
  (5 per 5 s per channel: ``rate = 1``, ``burst = 5``) so a burst queues here instead of piling
  up in the library.

Inbound: a message in a guild text channel, voice channel chat or thread -> MESSAGE (channel =
the channel id; in a thread, channel = thread_id = the thread's id, so the answer lands in the
thread); a DM -> PRIVATE_MESSAGE (channel = the sender's id). ``guilds`` and ``channels`` are
allow-lists of ids (a thread is allowed when it or its parent channel is). Ignored: the bot's own
messages, other bots', webhooks', system messages (joins, pins...). Roles: the guild owner and
members with Administrator or Manage Server -> admin; members holding a role named in
``op_roles`` (a name, case-insensitive, or a role id) -> op; a DM carries no role.

Intents: guilds, guild messages, direct messages and message content; only Message Content is
privileged (enable it in the developer portal). Members is not asked for: a MESSAGE_CREATE
carries the author's roles, which is all the role mapping needs (so there are no user_join /
user_leave events on Discord).

Plugin-process side: imports only the standard library, ``core``, the adapter base and discord.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections import OrderedDict
from typing import Any, ClassVar
from urllib.parse import urlsplit

import discord
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.rosey.adapters.chat_adapter import ChatAdapter
from bot.rosey.adapters.outbox import DeliveryFailed
from bot.rosey.core.chat import ChatEventType, ChatUser, OutgoingMessage, Role

__all__ = ["DEFAULT_API_BASE", "DiscordAdapter"]


# discord.py reads and writes the gateway's JSON with orjson whenever orjson is importable, and it
# is (Rosey's envelope uses it). orjson refuses what the stdlib reads (an escaped lone surrogate,
# "\ud800"), and discord.py then drops the session on one odd message: keep the stdlib here, the
# codec discord.py uses without orjson (the adapter cleans such text itself).
setattr(discord.utils, "_from_json", json.loads)  # noqa: B010 (a private name: kept out of mypy's view)
setattr(discord.utils, "_to_json", lambda obj: json.dumps(obj, separators=(",", ":"), ensure_ascii=True))  # noqa: B010

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://discord.com/api/v10"
#: After a failed send while the gateway still looks up: when to let the outbox try again.
RETRY_AFTER_ERROR = 2.0
#: DM channels remembered (user id -> DM channel id), so a private reply needs no extra request.
MAX_DM_CHANNELS = 1000
#: The message types that are someone talking (everything else is a system message).
_CHAT_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})
#: Close codes and what the operator should do about them (discord.py gives up on these).
_FATAL_HINTS = {
    4004: "the token was refused: check token_env / token_file (Developer Portal > Bot > Reset Token)",
    4013: "invalid intents were requested",
    4014: (
        "the Message Content intent is not enabled for this bot: Developer Portal > your "
        "application > Bot > Privileged Gateway Intents > Message Content Intent, then Save"
    ),
}


def _api_base(value: object) -> str:
    """``api_base`` as discord.py's ``Route.BASE`` (``/api/v10`` added when only a host is given)."""
    if value is None:
        return DEFAULT_API_BASE
    if not isinstance(value, str):
        raise ValueError(f"api_base must be a URL like {DEFAULT_API_BASE!r}, got {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"api_base must be a URL like {DEFAULT_API_BASE!r}, got {value!r}")
    base = value.rstrip("/")
    if parts.path in ("", "/"):
        base += "/api/v10"
    return base


def _gateway(value: object) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or urlsplit(value).scheme not in ("ws", "wss")
        or not urlsplit(value).hostname
    ):
        raise ValueError(f"gateway must be a URL like 'wss://gateway.discord.gg', got {value!r}")
    return value


def _ids(key: str, raw: object) -> frozenset[int]:
    """An allow-list of Discord ids (numbers, or strings of digits: TOML holds both)."""
    if raw is None:
        return frozenset()
    values = raw if isinstance(raw, (list, tuple)) else [raw]
    ids: set[int] = set()
    for value in values:
        try:
            if isinstance(value, bool):
                raise ValueError
            ids.add(int(str(value).strip()))
        except ValueError:
            raise ValueError(
                f"{key}: {value!r} is not a Discord id (turn on Developer Mode in Discord's "
                "settings, then right-click the server or channel > Copy ID)"
            ) from None
    return frozenset(ids)


def _names(key: str, raw: object) -> frozenset[str]:
    if raw is None:
        return frozenset()
    values = raw if isinstance(raw, (list, tuple)) else [raw]
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{key} must be a list of role names (or role ids), got {raw!r}")
    return frozenset(str(v).strip().casefold() for v in values)


class _Client(discord.Client):
    """One gateway session's client; hands what it hears to its adapter."""

    def __init__(self, adapter: DiscordAdapter) -> None:
        # Rosey has no voice: discord.py's warning about missing voice libraries is noise here.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = True  # privileged: enable it in the developer portal
        super().__init__(
            intents=intents,
            max_messages=None,  # no message cache: nothing here reads old messages
            chunk_guilds_at_startup=False,
            allowed_mentions=discord.AllowedMentions(
                everyone=False, users=False, roles=False, replied_user=True
            ),
        )
        self.adapter = adapter

    async def on_connect(self) -> None:  # READY: a new session
        self.adapter._gateway_up(True)

    async def on_resumed(self) -> None:  # RESUMED: the missed events were replayed
        self.adapter._gateway_up(True)

    async def on_disconnect(self) -> None:
        self.adapter._gateway_up(False)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        self.adapter._note_guild(guild)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        self.adapter._note_guild(guild)

    async def on_message(self, message: discord.Message) -> None:
        try:
            await self.adapter.handle_message(message)
        except asyncio.CancelledError:
            raise
        except Exception:  # one odd message must never end the session
            logger.exception("%s: could not handle message %s", self.adapter.name, message.id)


class DiscordAdapter(ChatAdapter):
    """A Discord bot user (see the module docstring)."""

    platform_type: ClassVar[str] = "discord"
    max_message_chars: ClassVar[int | None] = 2000  # Discord counts code points (its API is Python)
    keeps_newlines: ClassVar[bool] = True
    # Discord's documented send limit is about 5 messages per 5 s per channel (50 requests/s
    # globally); one outbox serves every channel, so pace as for one busy channel.
    default_rate: ClassVar[float] = 1.0
    default_burst: ClassVar[int] = 5

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_base = _api_base(self.settings.get("api_base"))
        self.gateway = _gateway(self.settings.get("gateway"))
        self.guild_ids = _ids("guilds", self.settings.get("guilds"))
        self.channel_ids = _ids("channels", self.settings.get("channels"))
        self.op_roles = _names("op_roles", self.settings.get("op_roles"))
        self._client: _Client | None = None
        self._up = False
        self._dm_channels: OrderedDict[str, int] = OrderedDict()
        self._ignored_guilds: set[int] = set()

    # ------------------------------------------------------------------ session

    async def on_start(self) -> None:
        if not self.secret("token"):
            raise ValueError(
                f"adapters.{self.name}: no bot token: set token_env (an environment variable) or "
                "token_file (a file) to the token from Developer Portal > Bot > Reset Token"
            )
        await super().on_start()

    async def run_session(self) -> None:
        token = self.secret("token") or ""
        Route.BASE = self.api_base
        client = _Client(self)
        self._client = client
        try:
            try:
                await client.login(token)
            except discord.LoginFailure:
                logger.error("%s: %s", self.name, _FATAL_HINTS[4004])
                raise
            gateway = self.gateway or (await client.http.get_bot_gateway())[1]
            DiscordWebSocket.DEFAULT_GATEWAY = type(DiscordWebSocket.DEFAULT_GATEWAY)(gateway)
            logger.info("%s: logged in as %s; gateway %s", self.name, client.user, gateway)
            await client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            logger.error("%s: the gateway closed the session (4014): %s", self.name, _FATAL_HINTS[4014])
            raise
        except discord.ConnectionClosed as exc:
            if hint := _FATAL_HINTS.get(exc.code or 0):
                logger.error("%s: the gateway closed the session (%s): %s", self.name, exc.code, hint)
            raise
        finally:
            self._gateway_up(False)
            self._client = None
            with contextlib.suppress(Exception):
                await client.close()

    async def close_session(self) -> None:
        if self._client is not None:
            await self._client.close()

    def _gateway_up(self, up: bool) -> None:
        self._up = up
        self.set_connected(up)

    def _recheck(self) -> None:
        """After a failed send: let the outbox go on if the session is still there."""
        if self._up and not self._stopping:
            self.set_connected(True)

    def _note_guild(self, guild: discord.Guild) -> None:
        if self.guild_ids and guild.id not in self.guild_ids and guild.id not in self._ignored_guilds:
            self._ignored_guilds.add(guild.id)
            logger.warning(
                "%s: in guild %s (%s), which is not in `guilds`: ignored", self.name, guild.id, guild
            )

    # ------------------------------------------------------------------ inbound

    def allowed(self, message: discord.Message) -> bool:
        """Whether a message is from a place the allow-lists admit (DMs always are)."""
        if message.guild is None:
            return True
        if self.guild_ids and message.guild.id not in self.guild_ids:
            return False
        if not self.channel_ids:
            return True
        channel = message.channel
        places = {channel.id}
        if isinstance(channel, discord.Thread) and channel.parent_id is not None:
            places.add(channel.parent_id)
        return bool(places & self.channel_ids)

    def roles(self, author: discord.User | discord.Member) -> tuple[Role, ...]:
        """Rosey roles of a message's author (none outside a guild)."""
        if not isinstance(author, discord.Member):
            return ()
        roles: list[Role] = []
        permissions = author.guild_permissions  # all of them for the owner
        if author.guild.owner_id == author.id or permissions.administrator or permissions.manage_guild:
            roles.append(Role.ADMIN)
        if self.op_roles and any(
            r.name.casefold() in self.op_roles or str(r.id) in self.op_roles for r in author.roles
        ):
            roles.append(Role.OP)
        return tuple(roles)

    async def handle_message(self, message: discord.Message) -> None:
        """One MESSAGE_CREATE: emit it, unless it is the bot's, a bot's, a system message or off-list."""
        client = self._client
        author = message.author
        if client is None or client.user is None or author.id == client.user.id:
            return
        if author.bot or author.system or message.webhook_id is not None:
            return
        if message.type not in _CHAT_TYPES or not self.allowed(message):
            return
        user = ChatUser(id=str(author.id), name=author.display_name, roles=self.roles(author))
        reply_to = None
        if message.reference is not None and message.reference.message_id is not None:
            reply_to = str(message.reference.message_id)
        if message.guild is None:
            self._remember_dm(str(author.id), message.channel.id)
            await self.emit(
                ChatEventType.PRIVATE_MESSAGE,
                channel=str(author.id),
                user=user,
                text=message.clean_content,
                message_id=str(message.id),
                reply_to=reply_to,
            )
            return
        thread_id = str(message.channel.id) if isinstance(message.channel, discord.Thread) else None
        await self.emit(
            ChatEventType.MESSAGE,
            channel=str(message.channel.id),
            user=user,
            text=message.clean_content,
            message_id=str(message.id),
            thread_id=thread_id,
            reply_to=reply_to,
        )

    def _remember_dm(self, user_id: str, channel_id: int) -> None:
        self._dm_channels[user_id] = channel_id
        self._dm_channels.move_to_end(user_id)
        while len(self._dm_channels) > MAX_DM_CHANNELS:
            self._dm_channels.popitem(last=False)

    # ------------------------------------------------------------------ outbound

    async def deliver(self, message: OutgoingMessage) -> None:
        if not message.text.strip():
            return  # Discord refuses an empty message; there is nothing to say
        await self._send(message)

    # files (6d, issue 13): the file is an attachment of the reply, the caption its text.
    supports_files: ClassVar[bool] = True

    async def deliver_file(self, message: OutgoingMessage, data: bytes) -> None:
        assert message.file is not None
        await self._send(message, file=discord.File(io.BytesIO(data), filename=message.file.name))

    async def _send(self, message: OutgoingMessage, **extra: Any) -> None:
        client = self._client
        if client is None:
            raise ConnectionError("not connected to Discord")
        try:
            if message.private_to is not None:
                channel_id = await self._dm_channel(client, message.private_to)
            else:
                channel_id = _snowflake("channel", message.thread_id or message.channel)
            kwargs: dict[str, Any] = dict(extra)
            if message.reply_to is not None and message.reply_to.isdigit():
                kwargs["reference"] = discord.MessageReference(
                    message_id=int(message.reply_to), channel_id=channel_id, fail_if_not_exists=False
                )
            await client.get_partial_messageable(channel_id).send(message.text or None, **kwargs)
        except DeliveryFailed:
            raise
        except (discord.Forbidden, discord.NotFound) as exc:
            if message.private_to is not None:
                self._dm_channels.pop(message.private_to, None)
            raise DeliveryFailed(f"Discord refused it ({exc.status} {exc.text or exc})") from None
        except discord.HTTPException as exc:
            if exc.status == 401 or exc.status >= 500:  # a revoked token, Discord unwell: not the message
                self._retry_later()
                raise
            raise DeliveryFailed(f"Discord refused it ({exc.status} {exc.text or exc})") from None
        except Exception:  # the network (aiohttp, OSError, a timeout): held for the next try
            self._retry_later()
            raise

    def _retry_later(self) -> None:
        asyncio.get_running_loop().call_later(RETRY_AFTER_ERROR, self._recheck)

    async def _dm_channel(self, client: discord.Client, user_id: str) -> int:
        """The DM channel with a user (``POST /users/@me/channels`` the first time)."""
        if (known := self._dm_channels.get(user_id)) is not None:
            return known
        data = await client.http.start_private_message(_snowflake("user", user_id))
        channel_id = int(data["id"])
        self._remember_dm(user_id, channel_id)
        return channel_id


def _snowflake(kind: str, value: str | None) -> int:
    if value is None or not value.isdigit():
        raise DeliveryFailed(f"{value!r} is not a Discord {kind} id")
    return int(value)
