"""A local stand-in for Slack's Web API and Socket Mode, written from Slack's public docs.

It is an aiohttp app on 127.0.0.1 (ephemeral port) that the real adapter reaches through its
``api_base`` setting (``AsyncWebClient(base_url=...)``); the Socket Mode websocket is wherever
``apps.connections.open`` says, here ``ws://127.0.0.1:PORT/socket?ticket=...``.

Reproduced:

* Web API methods ``auth.test``, ``apps.connections.open``, ``chat.postMessage``,
  ``conversations.info``, ``conversations.open``, ``users.info``, reached by GET or POST with
  arguments as a query string, a form or JSON, answering ``{"ok": true, ...}`` or
  ``{"ok": false, "error": ...}``. Tokens are checked as Slack does: the bot token (``xoxb``) in
  ``Authorization: Bearer`` for every method but ``apps.connections.open``, which takes only the
  app-level token (``xapp``); a wrong or missing one answers ``invalid_auth`` / ``not_authed``.
* ``chat.postMessage`` records channel, text and ``thread_ts`` and answers a fresh ``ts``; with
  ``rate_limit_every = N`` every N-th call answers HTTP 429 with ``Retry-After: 1`` and
  ``{"ok": false, "error": "ratelimited"}`` (and records nothing), as Slack's rate limits do.
* Socket Mode: ``apps.connections.open`` issues a one-time ticket; the websocket sends
  ``{"type": "hello", ...}``, then ``events_api`` envelopes (``envelope_id``, ``payload`` with
  an ``event_callback``) the test asks for; the client's ``{"envelope_id": ...}`` acks are
  recorded. ``disconnect()`` sends ``{"type": "disconnect", "reason": "refresh_requested"}`` (the
  client must open a new connection), ``drop()`` closes the socket without warning, ``freeze()``
  leaves it open but silent (no pongs: a dead network path), and ``refuse_sockets`` answers new
  websocket upgrades with 401 while the Web API keeps working.
* Files (issue 13): ``files.getUploadURLExternal`` (filename, length) answers an ``upload_url`` on
  this server, ``POST /upload/<file id>`` takes the raw bytes, ``files.completeUploadExternal``
  (``files`` as JSON, ``channel_id``, ``initial_comment``, ``thread_ts``) records the upload, bytes
  included, in ``uploads``.

Not reproduced: retries of unacknowledged envelopes (Slack resends up to 3 times; here the
tests check every envelope was acked instead), pings from the server side, interactive
payloads and slash commands, pagination, Block Kit, the legacy files.upload, real per-method
rate tiers (only the deterministic 429 above), message escaping of what the test sends (tests
write Slack's markup themselves), enterprise grid, and TLS.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from typing import Any

import pytest

aiohttp = pytest.importorskip(
    "aiohttp", reason="the Slack stand-in needs aiohttp (pip install 'rosey-bot[slack]')"
)
from aiohttp import web  # noqa: E402

BOT_TOKEN = "xoxb-1111-2222-standinBotToken"
APP_TOKEN = "xapp-1-A111-3333-standinAppToken"
BOT_USER = "UBOT0001"
BOT_ID = "BBOT0001"
TEAM = "T0000001"


class SlackStandIn:
    def __init__(self, *, bot_token: str = BOT_TOKEN, app_tokens: tuple[str, ...] = (APP_TOKEN,)) -> None:
        self.bot_token = bot_token
        self.app_tokens = set(app_tokens)
        self.port = 0
        self.users: dict[str, dict[str, Any]] = {
            BOT_USER: {"id": BOT_USER, "name": "rosey", "is_bot": True, "profile": {"display_name": "rosey"}},
        }
        self.channels: dict[str, dict[str, Any]] = {}
        self.posts: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.posted: list[dict[str, Any]] = []
        self.calls: list[str] = []  # Web API methods called, in order
        self.hellos: asyncio.Queue[int] = asyncio.Queue()  # connection numbers, as each opens
        self.connections = 0
        self.envelopes: list[str] = []
        self.acks: set[str] = set()
        self.rate_limit_every: int | None = None
        self.refuse_sockets = False  # websocket upgrades answered 401 (the Web API still works)
        self._transports: dict[web.WebSocketResponse, Any] = {}  # each socket's TCP transport
        self.rate_limited = 0
        self._tickets: set[str] = set()
        self._socket: web.WebSocketResponse | None = None
        self._acked = asyncio.Condition()
        self._called = asyncio.Condition()
        self._ts = itertools.count(1)
        self._post_calls = 0
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        # files (issue 13, 6d): files.getUploadURLExternal -> POST the bytes -> completeUploadExternal
        self.pending_files: dict[str, dict[str, Any]] = {}  # file id -> filename, length, data
        self.uploads: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # completed: channel, files...

    # ------------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> SlackStandIn:
        """Listen on ``port`` (0: an ephemeral one; a stopped stand-in's port to restart it)."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/socket", self._websocket)
        app.router.add_post("/upload/{file_id}", self._upload)  # files (issue 13)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        for transport in self._transports.values():
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def add_user(self, uid: str, name: str, *, admin: bool = False, owner: bool = False) -> None:
        self.users[uid] = {
            "id": uid,
            "name": name.lower(),
            "real_name": name,
            "is_admin": admin,
            "is_owner": owner,
            "is_bot": False,
            "profile": {"display_name": name, "real_name": name},
        }

    def add_channel(self, cid: str, name: str) -> None:
        self.channels[cid] = {"id": cid, "name": name, "is_channel": True, "is_member": True}

    # ------------------------------------------------------------------ Web API

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                args.update(body if isinstance(body, dict) else {})
            else:
                args.update(await request.post())
        async with self._called:
            self.calls.append(method)
            self._called.notify_all()
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        if not token:
            return _json({"ok": False, "error": "not_authed"})
        if method == "apps.connections.open":
            if token not in self.app_tokens:
                return _json({"ok": False, "error": "invalid_auth"})
            ticket = uuid.uuid4().hex
            self._tickets.add(ticket)
            return _json({"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket?ticket={ticket}&app_id=A1"})
        if token != self.bot_token:
            return _json({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return _json({"ok": False, "error": "unknown_method"})
        result = await handler(args)
        if isinstance(result, web.Response):
            return result
        return _json(result)

    async def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://standin.slack.com/",
            "team": "Stand-in",
            "user": "rosey",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    async def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any] | web.Response:
        self._post_calls += 1
        if self.rate_limit_every and self._post_calls % self.rate_limit_every == 0:
            self.rate_limited += 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text"):
            return {"ok": False, "error": "no_text"}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        post = {"channel": channel, "text": args["text"], "thread_ts": args.get("thread_ts"), "ts": ts}
        self.posted.append(post)
        await self.posts.put(post)
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args["text"], "user": BOT_USER}}

    # ---- files (issue 13, 6d): Slack's current upload flow, as slack_sdk's files_upload_v2 drives it

    async def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ts):08d}"
        self.pending_files[file_id] = {"filename": args["filename"], "length": int(args["length"])}
        return {
            "ok": True,
            "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}",
            "file_id": file_id,
        }

    async def _upload(self, request: web.Request) -> web.Response:
        pending = self.pending_files.get(request.match_info["file_id"])
        if pending is None:
            return web.Response(status=404, text="unknown upload")
        pending["data"] = await request.read()
        return web.Response(text=f"OK - {len(pending['data'])}")

    async def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        listed = args.get("files")
        listed = json.loads(listed) if isinstance(listed, str) else listed
        done = []
        for item in listed or []:
            pending = self.pending_files.pop(str(item.get("id")), None)
            if pending is None or "data" not in pending:
                return {"ok": False, "error": "file_not_found"}
            done.append({"id": item["id"], "title": item.get("title"), **pending})
        upload = {
            "channel": args.get("channel_id"),
            "initial_comment": args.get("initial_comment"),
            "thread_ts": args.get("thread_ts"),
            "files": done,
        }
        await self.uploads.put(upload)
        return {"ok": True, "files": [{"id": f["id"], "title": f["title"]} for f in done]}

    async def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    async def _m_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channels.get(str(args.get("channel")))
        return {"ok": True, "channel": channel} if channel else {"ok": False, "error": "channel_not_found"}

    async def _m_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args.get("users") or "")
        if users not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + users[1:]}}

    # ------------------------------------------------------------------ Socket Mode

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets or self.refuse_sockets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        self._transports[ws] = request.transport
        self.connections += 1
        self._socket = ws
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "standin", "approximate_connection_time": 3600},
                "connection_info": {"app_id": "A1"},
            }
        )
        await self.hellos.put(self.connections)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if isinstance(data, dict) and "envelope_id" in data:
                        async with self._acked:
                            self.acks.add(data["envelope_id"])
                            self._acked.notify_all()
        finally:
            self._transports.pop(ws, None)
            self._sockets.discard(ws)
            if self._socket is ws:
                self._socket = None
        return ws

    def freeze(self) -> None:
        """The current connection goes silent without closing (a dead network path): nothing
        more is read from it, so the client's pings get no pong."""
        assert self._socket is not None
        self._transports[self._socket].pause_reading()

    async def next_hello(self, timeout: float = 20.0) -> int:
        return await asyncio.wait_for(self.hellos.get(), timeout)

    async def send_event(self, event: dict[str, Any]) -> str:
        """Deliver one Events API event over the current websocket; returns its envelope id."""
        ws = self._socket
        assert ws is not None, "no Socket Mode connection"
        envelope_id = str(uuid.uuid4())
        self.envelopes.append(envelope_id)
        event.setdefault("event_ts", event.get("ts"))
        await ws.send_json(
            {
                "envelope_id": envelope_id,
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": 0,
                "retry_reason": "",
                "payload": {
                    "token": "verification-token",
                    "team_id": TEAM,
                    "api_app_id": "A1",
                    "event": event,
                    "type": "event_callback",
                    "event_id": "Ev" + envelope_id[:8],
                    "event_time": int(time.time()),
                    "authorizations": [
                        {"team_id": TEAM, "user_id": BOT_USER, "is_bot": True, "is_enterprise_install": False}
                    ],
                },
            }
        )
        return envelope_id

    async def message(
        self,
        text: str,
        *,
        user: str = "UALICE01",
        channel: str = "CMAIN001",
        channel_type: str = "channel",
        thread_ts: str | None = None,
        kind: str = "message",
        **extra: Any,
    ) -> str:
        """A person (or bot, with ``bot_id=``) says ``text``; returns the message's ts."""
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        event: dict[str, Any] = {"type": kind, "user": user, "text": text, "ts": ts, "channel": channel}
        if kind == "message":
            event["channel_type"] = channel_type
        if thread_ts:
            event["thread_ts"] = thread_ts
        event.update(extra)
        await self.send_event(event)
        return ts

    async def all_acked(self, timeout: float = 10.0) -> None:
        """Wait until every envelope sent so far was acknowledged."""

        async def wait() -> None:
            async with self._acked:
                await self._acked.wait_for(lambda: set(self.envelopes) <= self.acks)

        await asyncio.wait_for(wait(), timeout)

    async def called(self, method: str, times: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``method`` was called ``times`` times."""

        async def wait() -> None:
            async with self._called:
                await self._called.wait_for(lambda: self.calls.count(method) >= times)

        await asyncio.wait_for(wait(), timeout)

    async def disconnect(self) -> None:
        """Slack's warning that this connection is about to be refreshed."""
        assert self._socket is not None
        await self._socket.send_json(
            {"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "standin"}}
        )

    async def drop(self) -> None:
        """Close the current websocket without warning."""
        if self._socket is not None:
            await self._socket.close()

    async def next_post(self, timeout: float = 15.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.posts.get(), timeout)


def _json(data: dict[str, Any]) -> web.Response:
    return web.json_response(data)
