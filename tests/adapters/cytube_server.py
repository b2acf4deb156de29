"""A faithful fake CyTube server, for the CyTube adapter's tests (the real one is a Node.js
application, calzoneman/sync, that no package registry serves).

It is a python-socketio ``AsyncServer`` (socket.io 4 / Engine.IO 4, as the real server speaks)
in an aiohttp application, on 127.0.0.1 and a port the OS chose, run on its own event loop in a
background thread, so the adapter under test talks to it over real TCP. :meth:`FakeCytube.stop`
closes every connection the way a stopped server does, and :meth:`FakeCytube.start` listens on
the same port again (a real restart: users and throttles are forgotten, chat history is kept).

**Reproduced, from the real server's source** (calzoneman/sync):

* Each event is handled to completion before the next one (the real handlers are synchronous
  JavaScript from a join to its ``userlist``): every handler here holds one lock, so what a
  client sees of the channel is always consistent.

* ``GET /socketconfig/<channel>.json`` -> ``{"servers": [{"url": ..., "secure": false}]}``, 404
  ``{"error": ...}`` for an invalid channel name (``src/web/routes/socketconfig.js``).
* The per-IP connection throttle (``ipThrottleMiddleware``, ``src/io/ioserver.js``; bucket of
  ``src/util/token-bucket.js``: 5, +0.1/s, whole tokens, a refill restarts the clock): an empty
  bucket refuses the socket.io connection with ``CONNECT_ERROR {"message": "Rate limit
  exceeded"}``; and the per-IP limit on open connections ("Too many connections from your IP
  address", ``io.ip-connection-limit``, default 10). The IP is the peer's, or the first
  ``X-Forwarded-For`` address when the peer is loopback (the real server trusts loopback
  proxies), which lets tests be users "from elsewhere". Burst and rate are parameters so that
  tests stay fast; the algorithm is the real one.
* ``rank -1`` on connect (``src/user.js``); ``joinChannel {name}`` (invalid name: ``errorMsg``
  and ``kick``); ``login {name[, pw]}`` as ``User.handleLogin`` / ``guestLogin`` / ``login``:
  ``rank N`` then ``login {success: true, name[, guest: true]}``, or ``login {success: false,
  error}`` with the real error texts (invalid name, "That username is registered.", "That name
  is already in use on this channel.", "Invalid username/password combination", the guest
  login delay per IP, ``guest-login-delay``, real default 60 s, a parameter here). A second
  login of a registered user kicks the first ("Duplicate login").
* Joining (``Channel.joinUser`` / ``acceptUser``): ``addUser`` to the others when already logged
  in, then the chat history replayed as ``chatMsg`` (the last 15 messages, with their original
  ``time``), ``channelOpts``, and only then ``userlist`` and ``usercount``: the order an adapter
  relies on to tell history from live chat. Logging in while in the channel sends ``addUser``
  to everyone (the user included) and the "[server]" notice "NAME joined (aliases: NAME)" to
  ranks >= 2. ``userLeave {name}`` on disconnect. ``userlist`` entries are ``{name, rank,
  profile, meta}`` (moderators see ``meta.aliases`` and ``meta.ip``).
* ``chatMsg {msg, meta}`` as ``ChatModule.handleChatMsg`` / ``processChatMsg``: ignored unless
  logged in and of the channel's ``chat`` permission rank (``permissions.canChat``, silently);
  cut to ``max-chat-message-length`` (default 320) *UTF-16 code units* without notice
  (JavaScript's ``substring``: it can split a surrogate pair); ASCII control characters
  replaced by a space; blank messages ignored; the per-user chat limiter
  (``util.newRateLimiter``: burst 20, 10/s, cooldown 2 s, or the channel's
  ``chat_antiflood_params`` for ranks below 2 when ``chat_antiflood`` is on), a throttled
  message dropped with ``cooldown`` (``1000/sustained`` ms); HTML escaping
  (``XSS.sanitizeText``: ``& < > " ' ( )``), the default filters of a new channel
  (monospace, bold, italic, strike, spoiler) and links turned into ``<a>``; the commands
  ``/me``, ``/sp``, ``/afk``, ``/clear`` (rank >= 2) and ``/kick NAME`` (rank >= 2); then
  ``chatMsg {username, msg, meta, time}`` broadcast to the channel, the sender included, and
  kept in the 15-message buffer.
* ``pm {to, msg, meta}`` as ``handlePm``: ``errorMsg`` when not logged in, to oneself, to an
  invalid name or to someone not in the channel; the same limiter (always burst 20, 10/s) with
  ``cooldown``; the same cut; ``pm {username, msg, meta, time, to}`` to the recipient and back
  to the sender.
* ``setUserRank {name, rank}`` (and ``rank`` to the user), ``channelOpts`` on a change of options,
  ``kick {reason}`` then a disconnect: driven by the tests through :meth:`FakeCytube.set_rank`,
  :meth:`FakeCytube.set_options`, :meth:`FakeCytube.kick`.

**Not reproduced:** the media player and playlist, polls, voteskip, emotes, custom filters,
bans, mutes and shadow mutes, AFK, leaders, channel passwords (``needPassword``), cookies and
sessions (log in with a ``login`` frame only), aliases, the ``new_user_chat_delay`` and link
restrictions, the domain blacklist, Tor checks, announcements, ACP, channel registration (every
channel exists), several channels per connection, and Engine.IO v3 clients. TLS is optional
(``ssl_context``): then socketconfig lists an insecure server first and the secure one second,
and only the secure one answers, as a test of the adapter's choice.
Ranks are per account, not per channel.

Counters for the tests: ``dropped["length"]`` (messages cut), ``dropped["throttle"]``
(messages dropped with ``cooldown``), ``refused`` (connections refused by the throttle), and
``said`` (every chat message and PM broadcast, in order).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

socketio = pytest.importorskip(
    "socketio", reason="python-socketio is not installed (pip install -e '.[cytube]')"
)
web = pytest.importorskip("aiohttp.web", reason="aiohttp is not installed (pip install -e '.[cytube]')")

__all__ = ["Account", "CytubeUser", "FakeCytube", "cytube_server", "cytube_tls_server", "self_signed_context"]

_USER_NAME = re.compile(r"^[\w-]{1,20}$", re.ASCII)
_CHANNEL_NAME = re.compile(r"^[\w-]{1,30}$", re.ASCII)
_LINK = re.compile(r"(\w+://(?:[^:/\[\]\s]+|\[[0-9a-f:]+\])(?::\d+)?(?:/[^/\s]*)*)", re.IGNORECASE)
_LINK_PLACEHOLDER = "\ueeee"
#: The filters every new channel gets (channel/filters.js defaults).
_DEFAULT_FILTERS = [
    (re.compile(r"`(.+?)`"), r"<code>\1</code>"),
    (re.compile(r"\*(.+?)\*"), r"<strong>\1</strong>"),
    (re.compile(r"_(.+?)_"), r"<em>\1</em>"),
    (re.compile(r"~~(.+?)~~"), r"<s>\1</s>"),
    (re.compile(r"\[sp\](.*?)\[/sp\]"), r'<span class="spoiler">\1</span>'),
]
_MIN_ANTIFLOOD = {"burst": 20, "sustained": 10}
_BUFFER = 15


@dataclass(frozen=True)
class Account:
    """A registered user (its rank is its rank in every channel here)."""

    name: str
    password: str
    rank: float = 1


class TokenBucket:
    """src/util/token-bucket.js."""

    def __init__(self, capacity: int, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.count = capacity
        self.last_refill = time.monotonic()

    def throttle(self) -> bool:
        now = time.monotonic()
        delta = int((now - self.last_refill) * self.rate)
        if delta > 0:
            self.count = min(self.capacity, self.count + delta)
            self.last_refill = now
        if self.count == 0:
            return True
        self.count -= 1
        return False


class RateLimiter:
    """util.newRateLimiter() in src/utilities.js."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0

    def throttle(self, opts: dict[str, Any]) -> bool:
        burst = float(opts.get("burst", 10))
        sustained = float(opts.get("sustained", 2))
        cooldown = float(opts.get("cooldown", burst / sustained))
        now = time.monotonic()
        if self.last < now - cooldown:
            self.count = 1
            self.last = now
            return False
        if self.count < burst:
            self.count += 1
            self.last = now
            return False
        if now - self.last < 1 / sustained:
            return True
        self.last = now
        return False


def sanitize_text(text: str) -> str:
    """XSS.sanitizeText."""
    for char, entity in (
        ("&", "&amp;"),
        ("<", "&lt;"),
        (">", "&gt;"),
        ('"', "&quot;"),
        ("'", "&#39;"),
        ("(", "&#40;"),
        (")", "&#41;"),
    ):
        text = text.replace(char, entity)
    return text


def js_substring(text: str, units: int) -> str:
    """``text.substring(0, units)`` as JavaScript does it (UTF-16 code units)."""
    raw = text.encode("utf-16-le", errors="surrogatepass")
    if len(raw) <= 2 * units:
        return text
    return raw[: 2 * units].decode("utf-16-le", errors="surrogatepass")


def js_length(text: str) -> int:
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


@dataclass(eq=False)
class _User:
    sid: str
    ip: str
    name: str = ""
    rank: float = -1
    guest: bool = False
    logged_in: bool = False
    channel: _Channel | None = None
    limiter: RateLimiter = field(default_factory=RateLimiter)

    def pack(self, for_mod: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {"afk": False, "muted": False}
        if for_mod:
            meta.update({"smuted": False, "aliases": [self.name], "ip": self.ip})
        return {"name": self.name, "rank": self.rank, "profile": {"image": "", "text": ""}, "meta": meta}


@dataclass(eq=False)
class _Channel:
    name: str
    users: list[_User] = field(default_factory=list)
    buffer: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_BUFFER))
    opts: dict[str, Any] = field(
        default_factory=lambda: {
            "allow_voteskip": True,
            "afk_timeout": 600,
            "chat_antiflood": False,
            "chat_antiflood_params": {"burst": 4, "sustained": 1, "cooldown": 4},
            "enable_link_regex": True,
            "allow_ascii_control": False,
            "password": False,
        }
    )
    #: channel/permissions.js: the lowest rank that may chat (default 0: guests may).
    permissions: dict[str, float] = field(default_factory=lambda: {"chat": 0})


class FakeCytube:
    """The fake server; ``start()`` it, point the adapter at :attr:`url`, ``stop()`` it."""

    def __init__(
        self,
        *,
        accounts: tuple[Account, ...] = (),
        max_chat_message_length: int = 320,
        connect_burst: int = 5,
        connect_rate: float = 0.1,
        ip_connection_limit: int = 10,
        guest_login_delay: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
    ) -> None:
        self.accounts = {a.name.lower(): a for a in accounts}
        self.max_chat_message_length = max_chat_message_length
        self.connect_burst = connect_burst
        self.connect_rate = connect_rate
        self.ip_connection_limit = ip_connection_limit
        self.guest_login_delay = guest_login_delay
        self.ssl_context = ssl_context
        self.ping_interval = ping_interval  # Engine.IO's (socket.io 4 defaults: 25 s, 20 s)
        self.ping_timeout = ping_timeout
        #: A test knob, not a real behaviour: chat limits enforced whatever the channel's options
        #: say (so that a test can make the adapter's pace wrong and see it recover).
        self.chat_limits_override: dict[str, float] | None = None
        self.port = 0
        self.dropped: Counter[str] = Counter()
        self.refused = 0
        self.accepted = 0
        self.said: list[dict[str, Any]] = []  # every chatMsg / pm the server passed on
        self.commands: list[str] = []  # chat commands run
        self._channels: dict[str, _Channel] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-cytube", daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._sio: Any = None
        self._users: dict[str, _User] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._ip_count: Counter[str] = Counter()
        self._last_guest_login: dict[str, float] = {}
        # The real server's handlers run to completion one at a time (Node.js, synchronous from a
        # join to its userlist): here every handler holds this lock, re-entrant for its own task
        # (a kick calls the disconnect handler inside the handler that kicks).
        self._lock: asyncio.Lock | None = None
        self._lock_owner: asyncio.Task[Any] | None = None

    # ------------------------------------------------------------------ control (any thread)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 15.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> None:
        """Listen (on the same port as before, after a stop); returns once it accepts."""
        self._call(self._start())

    def stop(self) -> None:
        """Close every connection and stop listening (chat history is kept, as on disk)."""
        self._call(self._stop())

    def close(self) -> None:
        """Stop, end what is left running on the server's loop, and end its thread."""
        if self._runner is not None:
            self.stop()
        self._call(self._cancel_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def freeze(self, seconds: float) -> None:
        """Hang the server (no pings, no answers, connections left open) for ``seconds``, as a
        stuck or unreachable server looks from a client."""
        self._loop.call_soon_threadsafe(time.sleep, seconds)

    def set_chat_permission(self, channel: str, rank: float) -> None:
        """The lowest rank that may chat in ``channel`` (the channel's "chat" permission)."""
        self._loop.call_soon_threadsafe(self._channel(channel).permissions.__setitem__, "chat", rank)

    def set_rank(self, name: str, rank: float) -> None:
        self._call(self._atomic(self._set_rank)(name, rank))

    def set_options(self, channel: str, **opts: Any) -> None:
        self._call(self._atomic(self._set_options)(channel, opts))

    def kick(self, name: str, reason: str = "") -> None:
        self._call(self._atomic(self._kick)(name, reason))

    def add_history(self, channel: str, username: str, msg: str, time_ms: float | None = None) -> None:
        entry = {"username": username, "msg": msg, "meta": {}, "time": time_ms or time.time() * 1000}
        self._loop.call_soon_threadsafe(self._channel(channel).buffer.append, entry)

    def inject(self, channel: str, event: str, data: Any) -> None:
        """Send anything to everyone in ``channel`` (what a buggy or hostile server could send)."""
        self._call(self._atomic(self._inject)(channel, event, data))

    def users_in(self, channel: str) -> list[str]:
        return [u.name for u in self._channel(channel).users if u.logged_in]

    def set_connect_throttle(self, burst: int, rate: float) -> None:
        """New buckets from now on (existing ones are dropped, as by a restart)."""

        def apply() -> None:
            self.connect_burst, self.connect_rate = burst, rate
            self._buckets.clear()

        self._loop.call_soon_threadsafe(apply)

    # ------------------------------------------------------------------ the server (its loop)

    async def _start(self) -> None:
        sio = socketio.AsyncServer(
            async_mode="aiohttp",
            async_handlers=False,
            cors_allowed_origins="*",
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        )
        sio.on("connect", self._atomic(self._on_connect))
        sio.on("disconnect", self._atomic(self._on_disconnect))
        for event, handler in (
            ("joinChannel", self._on_join),
            ("login", self._on_login),
            ("chatMsg", self._on_chat),
            ("pm", self._on_pm),
        ):
            sio.on(event, self._guard(handler))
        app = web.Application()
        app.router.add_get("/socketconfig/{channel}.json", self._socketconfig)
        sio.attach(app)
        runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=self.ssl_context)
        await site.start()
        if not self.port:
            self.port = int(runner.addresses[0][1])
        self._sio, self._runner = sio, runner
        self._users, self._buckets, self._ip_count = {}, {}, Counter()
        self._last_guest_login = {}
        for channel in self._channels.values():
            channel.users.clear()

    async def _stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        sio = self._sio
        eio = sio.eio
        for eio_sid in list(eio.sockets):  # drop the transports, as a dying process does
            socket = eio.sockets.get(eio_sid)
            if socket is not None:
                await socket.close(wait=False, abort=True)
        await sio.shutdown()
        await runner.cleanup()

    async def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _atomic(
        self, handler: Callable[..., Coroutine[Any, Any, Any]]
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def run(*args: Any) -> Any:
            task = asyncio.current_task()
            if self._lock_owner is task:
                return await handler(*args)
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                self._lock_owner = task
                try:
                    return await handler(*args)
                finally:
                    self._lock_owner = None

        return run

    def _guard(self, handler: Callable[[_User, Any], Coroutine[Any, Any, None]]) -> Any:
        async def run(sid: str, data: Any = None, *_: Any) -> None:
            user = self._users.get(sid)
            if user is not None:
                await handler(user, data)

        return self._atomic(run)

    def _channel(self, name: str) -> _Channel:
        key = name.lower()
        if key not in self._channels:
            self._channels[key] = _Channel(key)
        return self._channels[key]

    async def _socketconfig(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        if not _CHANNEL_NAME.match(channel):
            return web.json_response({"error": f'Channel "{channel}" does not exist.'}, status=404)
        if self.ssl_context is None:
            return web.json_response({"servers": [{"url": self.url, "secure": False}]})
        # As a real server with both listeners lists them; only the secure one answers here.
        insecure = {"url": f"http://127.0.0.1:{self.port}", "secure": False}
        return web.json_response({"servers": [insecure, {"url": self.url, "secure": True}]})

    async def _emit(self, event: str, data: Any, to: str) -> None:
        await self._sio.emit(event, data, to=to)

    # connection ----------------------------------------------------------------------------

    def _ip(self, environ: dict[str, Any]) -> str:
        request = environ.get("aiohttp.request")
        peer = (request.remote if request is not None else None) or "127.0.0.1"
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded and ipaddress.ip_address(peer).is_loopback:
            return str(forwarded).split(",")[0].strip()
        return peer

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        ip = self._ip(environ)
        bucket = self._buckets.setdefault(ip, TokenBucket(self.connect_burst, self.connect_rate))
        if bucket.throttle():
            self.refused += 1
            raise socketio.exceptions.ConnectionRefusedError("Rate limit exceeded")
        if self._ip_count[ip] >= self.ip_connection_limit:
            self.refused += 1
            raise socketio.exceptions.ConnectionRefusedError("Too many connections from your IP address")
        self._ip_count[ip] += 1
        self.accepted += 1
        self._users[sid] = _User(sid=sid, ip=ip)
        self._sio.start_background_task(self._emit, "rank", -1, sid)

    async def _on_disconnect(self, sid: str, *_: Any) -> None:
        user = self._users.pop(sid, None)
        if user is None:
            return
        self._ip_count[user.ip] -= 1
        channel = user.channel
        if channel is not None and user in channel.users:
            channel.users.remove(user)
            if user.logged_in:
                for other in channel.users:
                    await self._emit("userLeave", {"name": user.name}, other.sid)
            for other in channel.users:
                await self._emit("usercount", len(channel.users), other.sid)

    async def _kick_user(self, user: _User, reason: str) -> None:
        await self._emit("kick", {"reason": reason}, user.sid)
        await self._sio.disconnect(user.sid)

    # join and login ------------------------------------------------------------------------

    async def _on_join(self, user: _User, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or user.channel:
            return
        if not _CHANNEL_NAME.match(data["name"]):
            await self._emit(
                "errorMsg",
                {
                    "msg": "Invalid channel name.  Channel names may consist of 1-30 characters "
                    "in the set a-z, A-Z, 0-9, -, and _"
                },
                user.sid,
            )
            await self._kick_user(user, "Invalid channel name")
            return
        channel = self._channel(data["name"])
        user.channel = channel
        if user.logged_in:
            await self._user_joined(channel, user, channel.users)
        channel.users.append(user)
        for entry in list(channel.buffer):  # chat history (ChatModule.onUserPostJoin)
            await self._emit("chatMsg", entry, user.sid)
        await self._emit("channelOpts", channel.opts, user.sid)
        listed = [u.pack(user.rank >= 2) for u in channel.users if u.logged_in]
        await self._emit("userlist", listed, user.sid)
        for other in channel.users:
            await self._emit("usercount", len(channel.users), other.sid)

    async def _user_joined(self, channel: _Channel, user: _User, to: list[_User]) -> None:
        for other in list(channel.users):
            if other is not user and other.logged_in and other.name.lower() == user.name.lower():
                await self._kick_user(other, "Duplicate login")
        for other in to:
            if other.sid in self._users:
                await self._emit("addUser", user.pack(other.rank >= 2), other.sid)
        notice = {
            "username": "[server]",
            "msg": f"{user.name} joined (aliases: {user.name})",
            "meta": {"addClass": "server-whisper", "addClassToNameAndTimestamp": True},
            "time": time.time() * 1000,
        }
        for other in channel.users:
            if other.rank >= 2 and other.sid in self._users:
                await self._emit("chatMsg", notice, other.sid)

    async def _login_failed(self, user: _User, error: str) -> None:
        await self._emit("login", {"success": False, "error": error}, user.sid)

    async def _on_login(self, user: _User, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or user.logged_in:
            return
        name = data["name"]
        pw = data.get("pw") if isinstance(data.get("pw"), str) else ""
        if pw:
            account = self.accounts.get(name.lower())
            if account is None or account.password != pw:
                await self._login_failed(user, "Invalid username/password combination")
                return
            user.name, user.rank, user.guest = account.name, account.rank, False
            await self._emit("rank", user.rank, user.sid)
            await self._emit("login", {"success": True, "name": account.name}, user.sid)
        else:
            last = self._last_guest_login.get(user.ip)
            if last is not None and time.monotonic() - last < self.guest_login_delay:
                await self._login_failed(
                    user,
                    "Guest logins are restricted to one per IP address per "
                    f"{self.guest_login_delay:g} seconds.",
                )
                return
            if not _USER_NAME.match(name):
                await self._login_failed(
                    user,
                    "Invalid username.  Usernames must be 1-20 characters long and consist only "
                    "of characters a-z, A-Z, 0-9, -, or _.",
                )
                return
            if name.lower() in self.accounts:
                await self._login_failed(user, "That username is registered.")
                return
            if user.channel is not None and any(
                u.logged_in and u.name.lower() == name.lower() for u in user.channel.users
            ):
                await self._login_failed(user, "That name is already in use on this channel.")
                return
            self._last_guest_login[user.ip] = time.monotonic()
            user.name, user.rank, user.guest = name, 0, True
            await self._emit("rank", 0, user.sid)
            await self._emit("login", {"success": True, "name": name, "guest": True}, user.sid)
        user.logged_in = True
        if user.channel is not None:
            await self._user_joined(user.channel, user, user.channel.users)

    # chat ------------------------------------------------------------------------------------

    def _cut(self, msg: str) -> str:
        if js_length(msg) > self.max_chat_message_length:
            self.dropped["length"] += 1
            return js_substring(msg, self.max_chat_message_length)
        return msg

    def _format(self, channel: _Channel, username: str, msg: str, meta: dict[str, Any]) -> dict[str, Any]:
        text = sanitize_text(msg)
        links = _LINK.findall(text)
        text = _LINK.sub(_LINK_PLACEHOLDER, text)
        for pattern, replacement in _DEFAULT_FILTERS:
            text = pattern.sub(replacement, text)
        for link in links:
            shown = (
                f'<a href="{link}" target="_blank">{link}</a>' if channel.opts["enable_link_regex"] else link
            )
            text = text.replace(_LINK_PLACEHOLDER, shown, 1)
        return {"username": username, "msg": text, "meta": meta, "time": time.time() * 1000}

    async def _on_chat(self, user: _User, data: Any) -> None:
        channel = user.channel
        if not isinstance(data, dict) or not isinstance(data.get("msg"), str):
            await self._emit("errorMsg", {"msg": "Unexpected error for message chatMsg: msg"}, user.sid)
            return
        if channel is None or user.rank < channel.permissions["chat"]:
            return  # permissions.canChat: dropped without a word
        msg = self._cut(data["msg"])
        if not channel.opts["allow_ascii_control"]:
            msg = re.sub(r"[\x00-\x1f]+", " ", msg)
        if not msg.strip() or not user.logged_in:
            return
        antiflood: dict[str, Any] = _MIN_ANTIFLOOD
        if channel.opts["chat_antiflood"] and user.rank < 2:
            antiflood = channel.opts["chat_antiflood_params"]
        antiflood = self.chat_limits_override or antiflood
        if user.limiter.throttle(antiflood):
            self.dropped["throttle"] += 1
            await self._emit("cooldown", 1000 / float(antiflood["sustained"]), user.sid)
            return
        meta: dict[str, Any] = {}
        if msg.startswith(">"):
            meta["addClass"] = "greentext"
        if msg.startswith("/"):
            command, _, rest = msg[1:].partition(" ")
            if command in ("me", "sp", "afk", "clear", "kick"):
                self.commands.append(msg)
                if command in ("afk",):
                    return
                if command == "clear":
                    if user.rank >= 2:
                        channel.buffer.clear()
                        for other in channel.users:
                            await self._emit("clearchat", None, other.sid)
                    return
                if command == "kick":
                    target = next(
                        (u for u in channel.users if u.name.lower() == rest.split(" ")[0].lower()), None
                    )
                    if user.rank >= 2 and target is not None and target.rank < user.rank:
                        await self._kick_user(target, f"Kicked by {user.name}")
                    return
                meta["addClass"] = "action" if command == "me" else "spoiler"
                if command == "me":
                    meta["action"] = True
                msg = rest
        entry = self._format(channel, user.name, msg, meta)
        self.said.append({"event": "chatMsg", "channel": channel.name, **entry})
        channel.buffer.append(entry)
        for other in channel.users:
            await self._emit("chatMsg", entry, other.sid)

    async def _on_pm(self, user: _User, data: Any) -> None:
        channel = user.channel
        if not (
            isinstance(data, dict) and isinstance(data.get("msg"), str) and isinstance(data.get("to"), str)
        ):
            await self._emit("errorMsg", {"msg": "Unexpected error for message pm: msg"}, user.sid)
            return
        if channel is None:
            return
        if not user.logged_in:
            await self._emit("errorMsg", {"msg": "You must be signed in to send PMs"}, user.sid)
            return
        to = data["to"].lower()
        if to == user.name.lower():
            await self._emit("errorMsg", {"msg": "You can't PM yourself!"}, user.sid)
            return
        if not _USER_NAME.match(to):
            await self._emit("errorMsg", {"msg": f"PM failed: {to} isn't a valid username."}, user.sid)
            return
        if user.limiter.throttle(_MIN_ANTIFLOOD):
            self.dropped["throttle"] += 1
            await self._emit("cooldown", 1000 / _MIN_ANTIFLOOD["sustained"], user.sid)
            return
        msg = self._cut(data["msg"])
        target = next((u for u in channel.users if u.logged_in and u.name.lower() == to), None)
        if target is None:
            await self._emit(
                "errorMsg", {"msg": f"PM failed: {to} isn't connected to this channel."}, user.sid
            )
            return
        meta = {"addClass": "greentext"} if msg.startswith(">") else {}
        entry = {**self._format(channel, user.name, msg, meta), "to": target.name}
        self.said.append({"event": "pm", "channel": channel.name, **entry})
        await self._emit("pm", entry, target.sid)
        await self._emit("pm", entry, user.sid)

    # test controls -------------------------------------------------------------------------

    async def _set_rank(self, name: str, rank: float) -> None:
        account = self.accounts.get(name.lower())
        if account is not None:
            self.accounts[name.lower()] = Account(account.name, account.password, rank)
        for user in list(self._users.values()):
            if user.logged_in and user.name.lower() == name.lower():
                user.rank = rank
                await self._emit("rank", rank, user.sid)
                if user.channel is not None:
                    for other in user.channel.users:
                        await self._emit("setUserRank", {"name": user.name, "rank": rank}, other.sid)

    async def _set_options(self, channel_name: str, opts: dict[str, Any]) -> None:
        channel = self._channel(channel_name)
        channel.opts.update(opts)
        for other in channel.users:
            await self._emit("channelOpts", channel.opts, other.sid)

    async def _inject(self, channel_name: str, event: str, data: Any) -> None:
        for other in self._channel(channel_name).users:
            await self._emit(event, data, other.sid)

    async def _kick(self, name: str, reason: str) -> None:
        for user in list(self._users.values()):
            if user.logged_in and user.name.lower() == name.lower():
                await self._kick_user(user, reason)


class CytubeUser:
    """A person in a channel: a plain python-socketio client, logged in as a guest or an account.

    ``ip`` goes in ``X-Forwarded-For`` (trusted from loopback, as the real server does), so a
    test's people do not share the bot's connection throttle.
    """

    def __init__(
        self, server: FakeCytube, channel: str, name: str, *, password: str = "", ip: str = ""
    ) -> None:
        self.server = server
        self.channel = channel
        self.name = name
        self.password = password
        self.ip = ip or f"127.0.9.{abs(hash(name)) % 250 + 1}"
        self.client = socketio.AsyncClient(
            reconnection=False, handle_sigint=False, ssl_verify=server.ssl_context is None
        )
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()
        self.client.on("*", self._record)

    def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if args else None))
        self._changed.set()

    async def __aenter__(self) -> CytubeUser:
        await self.client.connect(
            self.server.url, headers={"X-Forwarded-For": self.ip}, transports=["websocket"]
        )
        await self.client.emit("joinChannel", {"name": self.channel})
        frame = {"name": self.name, **({"pw": self.password} if self.password else {})}
        await self.client.emit("login", frame)
        login = await self.wait_for("login")
        assert login.get("success"), login
        await self.wait_for("userlist")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    async def say(self, msg: str) -> None:
        await self.client.emit("chatMsg", {"msg": msg, "meta": {}})

    async def pm(self, to: str, msg: str) -> None:
        await self.client.emit("pm", {"to": to, "msg": msg, "meta": {}})

    def seen(self, event: str, where: Callable[[Any], bool] | None = None) -> list[Any]:
        return [data for name, data in self.events if name == event and (where is None or where(data))]

    async def wait_until(self, check: Callable[[], bool], *, timeout: float = 20.0) -> None:
        """Wait until ``check()`` holds, looking again at each event received."""
        async with asyncio.timeout(timeout):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(
        self, event: str, where: Callable[[Any], bool] | None = None, *, count: int = 1, timeout: float = 20.0
    ) -> Any:
        """The ``count``-th ``event`` (matching ``where``) received so far, waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                found = self.seen(event, where)
                if len(found) >= count:
                    return found[count - 1]
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture(scope="module")
def cytube_server() -> Iterator[FakeCytube]:
    """A fake CyTube server for this test module (127.0.0.1, a port the OS chose)."""
    server = FakeCytube(
        accounts=(
            Account("rosey_bot", "bot-secret", 2),
            Account("alice", "alice-pw", 3),
            Account("bob", "bob-pw", 1),
        ),
        connect_burst=5,
        connect_rate=5.0,  # the real algorithm, refilled 50 times faster: reconnect tests stay fast
        guest_login_delay=0.0,  # real: 60 s per IP; a test sets it to see the adapter wait it out
    )
    server.start()
    try:
        yield server
    finally:
        server.close()


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    crypto = pytest.importorskip(
        "cryptography", reason="cryptography is not installed (it makes the test CA)"
    )
    del crypto
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.fixture(scope="module")
def cytube_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeCytube]:
    """The fake server behind TLS (a self-signed certificate), for this test module."""
    server = FakeCytube(
        connect_rate=5.0,
        guest_login_delay=0.0,
        ssl_context=self_signed_context(tmp_path_factory.mktemp("cytube-tls")),
    )
    server.start()
    try:
        yield server
    finally:
        server.close()
