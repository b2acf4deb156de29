"""A small stand-in for Discord (REST + gateway) on loopback, written from Discord's public API docs.

The real Discord cannot be reached from the tests, so :class:`DiscordStandIn` speaks its wire
protocol on ``127.0.0.1`` (ephemeral port, one aiohttp app in the test's event loop), and the
adapter reaches it through the setting operators also use for Discord-compatible servers:
``api_base = "http://127.0.0.1:PORT/api/v10"``; the gateway URL comes from ``GET /gateway/bot``.

What it reproduces (shapes from the docs' REST resources, Gateway and Rate Limits pages):

* REST under ``/api/v10`` with ``Authorization: Bot <token>`` (anything else: 401):
  ``GET /gateway/bot`` (``url`` -> ``ws://127.0.0.1:PORT/gateway``, shards, session_start_limit),
  ``GET /users/@me``, ``GET /oauth2/applications/@me`` (discord.py's login asks for it),
  ``GET /channels/{id}``, ``POST /users/@me/channels`` (open a DM),
  ``POST /channels/{id}/messages`` (recorded with its ``message_reference`` and
  ``allowed_mentions``; answers a message object). Errors as Discord words them: 404 Unknown
  Channel (10003), 403 Missing Permissions (50013) for a read-only channel, 400 Invalid Form Body
  (50035, BASE_TYPE_MAX_LENGTH) past 2,000 code points, 400 (50006) for an empty message.
  A message with attachments (issue 13) comes as multipart/form-data (``payload_json`` and
  ``files[n]`` parts); each is recorded with its filename, content type and bytes.
* Rate limits per channel bucket: ``X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/-Bucket``
  on every send; a send beyond the bucket gets 429 with ``retry_after``, ``X-RateLimit-Scope`` and
  the ``Via`` header real 429s carry (discord.py treats a 429 without it as a Cloudflare ban).
  ``reject_posts = N`` makes the next N sends 429 whatever the bucket says; ``fail_posts = N``
  makes them 503. The window is short
  (``bucket_window``) so that a test of 50 sends takes seconds, not Discord's 50.
* The gateway: HELLO (op 10) -> heartbeats (op 1) answered by ACK (op 11); IDENTIFY (op 2, token
  checked: close 4004; the privileged Message Content intent asked for while
  ``message_content_enabled`` (the portal's switch) is off: close 4014) -> READY (session_id,
  resume_gateway_url, user, application, unavailable guilds) then one GUILD_CREATE per guild
  (channels, a thread, roles with permissions, members incl. the owner); MESSAGE_CREATE dispatches
  the test injects (:meth:`say`) with sequence numbers; a session outlives its connection:
  :meth:`drop` closes it (code 4000, or a TCP abort) and RESUME (op 6) replays every event after the
  client's ``seq`` then RESUMED; with ``refuse_resume`` (or an unknown session) RESUME gets
  INVALID_SESSION (op 9, ``d: false``) and the client must IDENTIFY afresh (a new session: what was
  missed is gone, as on Discord). :meth:`hold` keeps new gateway connections waiting (so a test can
  inject events while the client is away) until :meth:`release`.

What it does not: compression (text frames only; discord.py asks for zlib-stream and accepts
plain text), sharding, presences, member chunking (no members intent), THREAD_* / CHANNEL_* /
GUILD_MEMBER_* events, permissions on sends (only the read-only channel is refused), global or
invalid-request limits, the identify rate limit (1 per 5 s; discord.py waits it out itself),
interactions, attachment size limits, edits and deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

web = pytest.importorskip("aiohttp.web", reason="the Discord stand-in needs aiohttp (pip install aiohttp)")

# Snowflakes of the stand-in's world.
BOT = 800000000000000001
OWNER = 800000000000000010
ADMIN = 800000000000000011  # holds a role with Administrator
MANAGER = 800000000000000012  # holds a role with Manage Server
MOD = 800000000000000013  # holds the "Moderators" role
ALICE = 800000000000000014  # no role
OTHER_BOT = 800000000000000015
GUILD = 810000000000000001
OTHER_GUILD = 810000000000000002
GENERAL = 820000000000000001  # text channel
RANDOM = 820000000000000002  # text channel
READONLY = 820000000000000003  # the bot may not send here (403)
THREAD = 820000000000000010  # public thread in GENERAL
OTHER_GENERAL = 820000000000000020  # text channel of OTHER_GUILD
ROLE_ADMINS = 830000000000000001
ROLE_MANAGERS = 830000000000000002
ROLE_MODS = 830000000000000003

INTENT_MESSAGE_CONTENT = 1 << 15
_NAMES = {
    BOT: "rosey",
    OWNER: "olivia",
    ADMIN: "adam",
    MANAGER: "maria",
    MOD: "moe",
    ALICE: "alice",
    OTHER_BOT: "otherbot",
}
_MEMBER_ROLES = {OWNER: [], ADMIN: [ROLE_ADMINS], MANAGER: [ROLE_MANAGERS], MOD: [ROLE_MODS], ALICE: []}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def user_object(user_id: int) -> dict[str, Any]:
    user: dict[str, Any] = {
        "id": str(user_id),
        "username": _NAMES.get(user_id, f"user{user_id % 1000}"),
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
    }
    if user_id in (BOT, OTHER_BOT):
        user["bot"] = True
    return user


def _role(role_id: int, name: str, permissions: int, position: int) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "permissions": str(permissions),
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def _text_channel(channel_id: int, guild_id: int, name: str, position: int) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "type": 0,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
    }


def _member(user_id: int, roles: Iterable[int]) -> dict[str, Any]:
    return {
        "roles": [str(r) for r in roles],
        "joined_at": "2024-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
    }


def guild_object(guild_id: int) -> dict[str, Any]:
    """A GUILD_CREATE payload (the docs' guild object plus the gateway-only fields)."""
    if guild_id == GUILD:
        channels = [
            _text_channel(GENERAL, GUILD, "general", 0),
            _text_channel(RANDOM, GUILD, "random", 1),
            _text_channel(READONLY, GUILD, "announcements", 2),
        ]
        threads = [
            {
                "id": str(THREAD),
                "type": 11,
                "guild_id": str(GUILD),
                "parent_id": str(GENERAL),
                "owner_id": str(ALICE),
                "name": "help",
                "last_message_id": None,
                "message_count": 0,
                "member_count": 1,
                "rate_limit_per_user": 0,
                "flags": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _now(),
                    "locked": False,
                },
            }
        ]
        roles = [
            _role(GUILD, "@everyone", 0x400 | 0x800 | 0x10000, 0),  # view, send, read history
            _role(ROLE_ADMINS, "Admins", 0x8, 3),  # ADMINISTRATOR
            _role(ROLE_MANAGERS, "Managers", 0x20, 2),  # MANAGE_GUILD
            _role(ROLE_MODS, "Moderators", 0x2000, 1),  # MANAGE_MESSAGES: not admin
        ]
        members = [{**_member(uid, roles), "user": user_object(uid)} for uid, roles in _MEMBER_ROLES.items()]
        name, owner = "Rosey Test", OWNER
    else:
        channels = [_text_channel(OTHER_GENERAL, guild_id, "general", 0)]
        threads, members, name, owner = [], [], "Elsewhere", OWNER
        roles = [_role(guild_id, "@everyone", 0x400 | 0x800, 0)]
    members.append({**_member(BOT, []), "user": user_object(BOT)})
    return {
        "id": str(guild_id),
        "name": name,
        "icon": None,
        "owner_id": str(owner),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "features": [],
        "emojis": [],
        "stickers": [],
        "roles": roles,
        "joined_at": "2024-01-01T00:00:00+00:00",
        "large": False,
        "unavailable": False,
        "member_count": len(members),
        "members": members,
        "channels": channels,
        "threads": threads,
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    """A JSON response as Discord sends it: ``Content-Type: application/json`` exactly (discord.py
    reads anything else, even with ``; charset=utf-8``, as text)."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


@dataclass(eq=False)
class _Conn:
    ws: Any  # aiohttp.web.WebSocketResponse
    request: Any
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Session:
    id: str
    seq: int = 0
    log: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    conn: _Conn | None = None


@dataclass
class Stats:
    identifies: int = 0
    resumes: int = 0  # RESUMEs accepted
    invalidated: int = 0  # RESUMEs refused with op 9
    replayed: int = 0  # events sent again on a RESUME
    heartbeats: int = 0
    rate_limited: int = 0  # 429s served
    over_limit: int = 0  # sends that came while their bucket was empty (the client should wait)
    intents: list[int] = field(default_factory=list)


class DiscordStandIn:
    """Discord's REST and gateway for one bot user (see the module docstring)."""

    def __init__(self, token: str, *, guilds: Iterable[int] = (GUILD, OTHER_GUILD)) -> None:
        self.token = token
        self.guilds = list(guilds)
        self.port = 0
        self.stats = Stats()
        self.posts: list[dict[str, Any]] = []
        self.posted: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ready: asyncio.Queue[str] = asyncio.Queue()  # "identified" / "resumed", per event
        self.heartbeat_ms = 41250
        self.message_content_enabled = True  # the developer portal's switch
        self.refuse_resume = False
        self.reject_posts = 0
        self.fail_posts = 0  # the next N sends get 503 (Discord unwell: not the message's fault)
        self.retry_after = 0.05
        self.bucket_limit = 5
        self.bucket_window = 0.25
        self._buckets: dict[int, list[float]] = {}
        self._dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self._ids = itertools.count(900000000000000000)
        self._session: _Session | None = None
        self._conns: set[_Conn] = set()
        self._gate = asyncio.Event()
        self._gate.set()
        self._runner: Any = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> DiscordStandIn:
        """Serve on ``port`` (0: an ephemeral one; a restarted stand-in reuses the old port)."""
        app = web.Application()
        app.add_routes(
            [
                web.get("/api/v10/gateway/bot", self._gateway_bot),
                web.get("/api/v10/users/@me", self._me),
                web.get("/api/v10/oauth2/applications/@me", self._application),
                web.get("/api/v10/channels/{channel_id}", self._get_channel),
                web.post("/api/v10/channels/{channel_id}/messages", self._post_message),
                web.post("/api/v10/users/@me/channels", self._open_dm),
                web.get("/gateway", self._gateway),
            ]
        )
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        self._gate.set()
        await self.drop(abort=True)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # ------------------------------------------------------------------ what a test does

    async def say(
        self,
        text: str,
        *,
        user: int = ALICE,
        channel: int | None = GENERAL,
        guild: int | None = GUILD,
        reply_to: int | None = None,
        webhook: bool = False,
        message_type: int = 0,
    ) -> int:
        """Someone says ``text`` (``guild=None``: in a DM with the bot); returns the message id."""
        message_id = next(self._ids)
        data: dict[str, Any] = {
            "id": str(message_id),
            "author": user_object(user),
            "content": text,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": message_type,
            "flags": 0,
        }
        if guild is None:
            data["channel_id"] = str(self.dm_channel(user))
        else:
            data["channel_id"] = str(channel)
            data["guild_id"] = str(guild)
            if not webhook:
                data["member"] = _member(user, _MEMBER_ROLES.get(user, []))
        if webhook:
            data["webhook_id"] = str(next(self._ids))
            data["author"]["bot"] = True
        if reply_to is not None:
            data["type"] = 19
            data["message_reference"] = {"message_id": str(reply_to), "channel_id": data["channel_id"]}
        await self._dispatch("MESSAGE_CREATE", data)
        return message_id

    def dm_channel(self, user: int) -> int:
        if user not in self._dm_channels:
            self._dm_channels[user] = next(self._ids)
        return self._dm_channels[user]

    async def next_post(self, timeout: float = 15.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.posted.get(), timeout)

    async def next_ready(self, timeout: float = 20.0) -> str:
        """``"identified"`` (READY + GUILD_CREATEs sent) or ``"resumed"`` (RESUMED sent)."""
        return await asyncio.wait_for(self.ready.get(), timeout)

    def hold(self) -> None:
        """New gateway connections wait (before their handshake) until :meth:`release`."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    async def drop(self, *, abort: bool = False) -> None:
        """Close every gateway connection: code 4000 (resumable), or a plain TCP abort."""
        conns = list(self._conns)
        for conn in conns:
            if abort:
                transport = conn.request.transport
                if transport is not None:
                    transport.abort()
            else:
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=4000, message=b"Unknown error")
        for conn in conns:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.done.wait(), 5)

    # ------------------------------------------------------------------ REST

    def _authorized(self, request: Any) -> bool:
        return bool(request.headers.get("Authorization") == f"Bot {self.token}")

    @staticmethod
    def _error(status: int, code: int, message: str, **extra: Any) -> Any:
        return _json({"message": message, "code": code, **extra}, status=status)

    async def _gateway_bot(self, request: Any) -> Any:
        if not self._authorized(request):
            return self._error(401, 0, "401: Unauthorized")
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14400000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _me(self, request: Any) -> Any:
        if not self._authorized(request):
            return self._error(401, 0, "401: Unauthorized")
        return _json({**user_object(BOT), "verified": True, "mfa_enabled": False, "flags": 0})

    async def _application(self, request: Any) -> Any:
        if not self._authorized(request):
            return self._error(401, 0, "401: Unauthorized")
        return _json(
            {
                "id": str(BOT),
                "name": "Rosey",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": user_object(OWNER),
                "verify_key": "0" * 64,
                "flags": 1 << 19,  # GATEWAY_MESSAGE_CONTENT_LIMITED: the portal switch, unverified bot
            }
        )

    def _channel_object(self, channel_id: int) -> dict[str, Any] | None:
        for guild_id in self.guilds:
            guild = guild_object(guild_id)
            for channel in guild["channels"] + guild["threads"]:
                if int(channel["id"]) == channel_id:
                    return dict(channel)
        for user, dm in self._dm_channels.items():
            if dm == channel_id:
                return {"id": str(dm), "type": 1, "last_message_id": None, "recipients": [user_object(user)]}
        return None

    async def _get_channel(self, request: Any) -> Any:
        if not self._authorized(request):
            return self._error(401, 0, "401: Unauthorized")
        channel = self._channel_object(int(request.match_info["channel_id"]))
        if channel is None:
            return self._error(404, 10003, "Unknown Channel")
        return _json(channel)

    async def _open_dm(self, request: Any) -> Any:
        if not self._authorized(request):
            return self._error(401, 0, "401: Unauthorized")
        body = await request.json()
        user = int(body["recipient_id"])
        return _json(
            {
                "id": str(self.dm_channel(user)),
                "type": 1,
                "last_message_id": None,
                "recipients": [user_object(user)],
            }
        )

    def _bucket(self, channel_id: int) -> tuple[bool, int, float]:
        """Take one send from the channel's bucket: (allowed, remaining, reset_after)."""
        now = time.monotonic()
        bucket = self._buckets.setdefault(channel_id, [now, 0])
        if now - bucket[0] >= self.bucket_window:
            bucket[0], bucket[1] = now, 0
        reset_after = max(0.001, self.bucket_window - (now - bucket[0]))
        if bucket[1] >= self.bucket_limit:
            return False, 0, reset_after
        bucket[1] += 1
        return True, self.bucket_limit - int(bucket[1]), reset_after

    async def _post_message(self, request: Any) -> Any:
        if not self._authorized(request):
            return self._error(401, 0, "401: Unauthorized")
        channel_id = int(request.match_info["channel_id"])
        channel = self._channel_object(channel_id)
        if channel is None:
            return self._error(404, 10003, "Unknown Channel")
        if channel_id == READONLY:
            return self._error(403, 50013, "Missing Permissions")
        if self.fail_posts > 0:
            self.fail_posts -= 1
            return self._error(503, 0, "Service Unavailable")
        # files (issue 13, 6d): a message with attachments arrives as multipart/form-data, its
        # JSON in the ``payload_json`` part and each file in a ``files[n]`` part.
        attachments: list[dict[str, Any]] = []
        if request.content_type.startswith("multipart/"):
            body = {}
            async for part in await request.multipart():
                if part.name == "payload_json":
                    body = json.loads(await part.read())
                elif part.name and part.name.startswith("files["):
                    data = bytes(await part.read())
                    attachments.append(
                        {
                            "filename": part.filename,
                            "content_type": part.headers.get("Content-Type"),
                            "data": data,
                        }
                    )
        else:
            body = await request.json()
        content = body.get("content") or ""
        if not content and not attachments:
            return self._error(400, 50006, "Cannot send an empty message")
        if len(content) > 2000:  # code points: Discord's API is Python
            return self._error(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "content": {
                        "_errors": [
                            {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
                        ]
                    }
                },
            )
        forced = self.reject_posts > 0
        allowed, remaining, reset_after = (False, 0, self.retry_after) if forced else self._bucket(channel_id)
        headers = {
            "X-RateLimit-Limit": str(self.bucket_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": "c0ffee-messages",
        }
        if not allowed:
            if forced:
                self.reject_posts -= 1
            else:
                self.stats.over_limit += 1
            self.stats.rate_limited += 1
            retry_after = self.retry_after if forced else reset_after
            headers.update({"X-RateLimit-Scope": "user", "Retry-After": "1", "Via": "1.1 google"})
            return _json(
                {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
                status=429,
                headers=headers,
            )
        message_id = next(self._ids)
        message: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": user_object(BOT),
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        if channel.get("guild_id"):
            message["guild_id"] = channel["guild_id"]
        reference = body.get("message_reference")
        if reference:
            message["type"] = 19
            message["message_reference"] = {"channel_id": str(channel_id), **reference}
        record = {
            "id": message_id,
            "channel_id": channel_id,
            "content": content,
            "message_reference": reference,
            "allowed_mentions": body.get("allowed_mentions"),
            "attachments": attachments,  # files (issue 13): what the bot uploaded, bytes included
        }
        self.posts.append(record)
        await self.posted.put(record)
        return _json(message, headers=headers)

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: Any) -> Any:
        await self._gate.wait()
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, request)
        self._conns.add(conn)
        try:
            await self._send(
                conn, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_ms}, "s": None, "t": None}
            )
            async for msg in ws:
                if msg.type == web.WSMsgType.TEXT:
                    await self._on_payload(conn, json.loads(msg.data))
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._conns.discard(conn)
            if self._session is not None and self._session.conn is conn:
                self._session.conn = None
            conn.done.set()
        return ws

    async def _send(self, conn: _Conn, payload: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.ws.send_str(json.dumps(payload))

    async def _dispatch(self, event: str, data: dict[str, Any], session: _Session | None = None) -> None:
        session = session or self._session
        if session is None:
            raise RuntimeError("no gateway session: the bot has not identified yet")
        session.seq += 1
        session.log.append((session.seq, event, data))
        if session.conn is not None:
            await self._send(session.conn, {"op": 0, "t": event, "s": session.seq, "d": data})

    async def _on_payload(self, conn: _Conn, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            self.stats.heartbeats += 1
            await self._send(conn, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, data or {})
        elif op == 6:
            await self._resume(conn, data or {})

    async def _identify(self, conn: _Conn, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(data.get("intents", 0))
        self.stats.intents.append(intents)
        if intents & INTENT_MESSAGE_CONTENT and not self.message_content_enabled:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        self.stats.identifies += 1
        session = _Session(id=secrets.token_hex(16), conn=conn)
        self._session = session
        ready = {
            "v": 10,
            "user": {**user_object(BOT), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(BOT), "flags": 0},
        }
        await self._dispatch("READY", ready, session)
        for guild_id in self.guilds:
            await self._dispatch("GUILD_CREATE", guild_object(guild_id), session)
        await self.ready.put("identified")

    async def _resume(self, conn: _Conn, data: dict[str, Any]) -> None:
        session = self._session
        if (
            self.refuse_resume
            or session is None
            or data.get("session_id") != session.id
            or data.get("token") != self.token
        ):
            self.stats.invalidated += 1
            await self._send(conn, {"op": 9, "d": False, "s": None, "t": None})
            return
        self.stats.resumes += 1
        session.conn = conn
        since = int(data.get("seq") or 0)
        for seq, event, payload in list(session.log):
            if seq > since:
                self.stats.replayed += 1
                await self._send(conn, {"op": 0, "t": event, "s": seq, "d": payload})
        await self._dispatch("RESUMED", {}, session)
        await self.ready.put("resumed")
