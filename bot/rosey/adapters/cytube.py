"""Rosey on CyTube (the specification's home platform), over socket.io with python-socketio.

One session, as the real server (calzoneman/sync) expects it::

    GET  <server>/socketconfig/<channel>.json   -> {"servers": [{"url": ..., "secure": true}, ...]}
    socket.io connect to that url (a secure one when ``server`` is https)
    emit joinChannel {name}                      <- chat history (chatMsg ...), channelOpts, userlist
    emit login {name[, pw]}                      <- rank N, login {success, name} | {success: false, error}

then ``chatMsg {username, msg, meta, time}`` becomes a ``message`` event (``channel`` is the
CyTube channel's name), ``pm {username, msg, to}`` a ``private_message``, and ``addUser`` /
``userLeave`` become ``user_join`` / ``user_leave``. ``userlist``, ``addUser`` and
``setUserRank`` keep a table of ranks, mapped to roles: rank >= 3 admin, >= 2 op, >= 1.5
(leader) voice, else user.

**History is never a command.** On join the server replays its recent chat (``chatMsg`` with
their old ``time``) *before* it sends ``userlist`` (``Channel.acceptUser``: the modules'
``onUserPostJoin``, the chat buffer among them, run before ``sendUserlist``). Every ``chatMsg``
before this session's ``userlist`` is history and is skipped. The bot's own messages come back
(the server broadcasts chat to everyone, and sends a PM back to its sender): they are the
confirmation that a message was accepted, never an event. Messages of shadow-muted users
(``meta.shadow``, seen only by moderators) and of the server (``[server]``) are skipped too.

**Outbound, nothing silently lost.** The server cuts a message at ``max-chat-message-length``
(default 320) UTF-16 units without notice, so replies are split at ``max_message_chars`` (320,
counted as the server counts). It drops what exceeds its chat limiter and says ``cooldown``:
the adapter paces itself under that limiter (see ``cytube_limits``), waits for each message's
outcome (its echo, ``cooldown``, ``errorMsg`` or ``noflood``) before the next, and re-sends
after a ``cooldown``. A piece that would start with ``/`` (a chat command, run with the bot's
rank) is sent with a leading space.

**Reconnects: one loop, the base's.** python-socketio's own reconnection is off; a dropped
connection ends :meth:`run_session` and the base reconnects with backoff.
:meth:`reconnect_delay` also waits for the server's per-IP connection throttle (a burst of 5,
then one per 10 s; the bot keeps its own copy of that bucket, persisted in its state
directory), and a refused attempt ("Rate limit exceeded") waits for the next token instead of
failing. A refused login of a registered account (bad password) waits ``login_retry`` seconds
(default 600) before trying again: never hammer a login.

Settings (``[adapters.NAME]``): ``server`` (``https://cytu.be``), ``channel``, ``user`` (the
account, or the guest name when no password is configured), ``tls_verify`` (default true),
``max_message_chars`` (default 320, the server's ``max-chat-message-length``), ``transports``
(default ``["websocket"]``), ``login_retry`` (600 s), ``connect_burst`` / ``connect_rate`` (5,
0.1/s: the server's connection throttle), ``send_timeout`` (10 s), ``join_timeout`` (30 s), and
the common ``rate`` / ``burst`` (default 8/s, 16: under the server's floor of 10/s, 20) and
``reconnect_min`` / ``reconnect_max`` (2 s, 120 s). Secret: ``password`` (absent: guest login).

Plugin-process side: the standard library, ``core``, the adapter base, and python-socketio
(with aiohttp, on which its asyncio client runs) imported here only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import aiohttp
import socketio  # type: ignore[import-untyped]

from bot.rosey.adapters.chat_adapter import ChatAdapter
from bot.rosey.adapters.cytube_limits import MIN_ANTIFLOOD, ChatLimits, ChatPacer, ConnectThrottle
from bot.rosey.adapters.cytube_text import html_to_text, split_utf16
from bot.rosey.adapters.outbox import DeliveryFailed
from bot.rosey.core.chat import ChatEventType, ChatUser, OutgoingMessage, Role, clean_text
from bot.rosey.errors import PlatformError

__all__ = ["CytubeAdapter", "role_for_rank"]

logger = logging.getLogger(__name__)

#: Names the server accepts for users and channels (utilities.js isValidUserName/ChannelName).
_USER_NAME = re.compile(r"^[\w-]{1,20}$", re.ASCII)
_CHANNEL_NAME = re.compile(r"^[\w-]{1,30}$", re.ASCII)
#: "Guest logins are restricted to one per IP address per 60 seconds." (user.js guestLogin)
_GUEST_DELAY = re.compile(r"one per IP address per (\d+(?:\.\d+)?) seconds")
#: How often to try again when our guest name is still held (by our own previous connection,
#: until the server notices it is gone), and how many times.
_NAME_IN_USE_RETRY = 10.0
_NAME_IN_USE_TRIES = 12
#: Seconds to wait for the server's answer to a WebSocket close (a hung server sends none).
_WS_CLOSE = 2.0


def role_for_rank(rank: float) -> Role:
    """CyTube rank -> role: >= 3 (admin, owner, founder, site admin) ADMIN, >= 2 (moderator)
    OP, >= 1.5 (leader) VOICE, else USER (guests 0, registered users 1)."""
    if rank >= 3:
        return Role.ADMIN
    if rank >= 2:
        return Role.OP
    if rank >= 1.5:
        return Role.VOICE
    return Role.USER


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclasses.dataclass
class _Pending:
    """One message waiting for the server's verdict."""

    kind: str  # "chatMsg" or "pm"
    future: asyncio.Future[tuple[str, Any]]


class _Session:
    """What one socket.io connection knows; events are handled in the order they arrived."""

    def __init__(self, client: Any, http: aiohttp.ClientSession) -> None:
        self.client = client
        self.http = http
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.name: str | None = None  # our name once logged in
        self.rank: float = -1
        self.logged_in = False
        self.joined = False  # userlist received: everything after it is live
        self.ranks: dict[str, tuple[str, float]] = {}  # lower name -> (name, rank)
        self.options: dict[str, Any] = {}
        self.live: _Pending | None = None
        self.history_skipped = 0
        self.closed = False
        self.connect_error: str | None = None

    def push(self, event: str, data: Any) -> None:
        self.events.put_nowait((event, data))

    def resolve(self, outcome: str, data: Any) -> bool:
        live = self.live
        if live is None or live.future.done():
            return False
        live.future.set_result((outcome, data))
        return True

    def fail_pending(self) -> None:
        live = self.live
        if live is not None and not live.future.done():
            live.future.set_exception(ConnectionError("the CyTube connection was lost"))


class CytubeAdapter(ChatAdapter):
    """A CyTube channel, as a guest or a registered user."""

    platform_type: ClassVar[str] = "cytube"
    #: The server's max-chat-message-length (config.template.yaml default), in UTF-16 units.
    max_message_chars: ClassVar[int | None] = 320
    keeps_newlines: ClassVar[bool] = False
    #: Under the server's floor for every channel (burst 20, 10/s); ChatPacer also follows the
    #: channel's own, stricter chat_antiflood_params when they apply to the bot.
    default_rate: ClassVar[float] = 8.0
    default_burst: ClassVar[int] = 16
    reconnect_min: ClassVar[float] = 2.0
    reconnect_max: ClassVar[float] = 120.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        s = self.settings
        self.server = str(s.get("server") or "").rstrip("/")
        parts = urlsplit(self.server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"cytube: server must be an http(s) URL, got {self.server!r}")
        self.channel = str(s.get("channel") or "")
        if not _CHANNEL_NAME.match(self.channel):
            raise ValueError(f"cytube: channel must be 1-30 of a-z, A-Z, 0-9, - and _, got {self.channel!r}")
        self.user = str(s.get("user") or "")
        if not _USER_NAME.match(self.user):
            raise ValueError(f"cytube: user must be 1-20 of a-z, A-Z, 0-9, - and _, got {self.user!r}")
        self.tls_verify = bool(s.get("tls_verify", True))
        self.limit = int(s.get("max_message_chars", self.max_message_chars or 320))
        if not 2 <= self.limit <= 1000:
            raise ValueError(f"cytube: max_message_chars must be 2..1000, got {self.limit}")
        transports = s.get("transports", ["websocket"])
        self.transports = [str(t) for t in transports] if isinstance(transports, list) else ["websocket"]
        self.login_retry = float(s.get("login_retry", 600.0))
        self.send_timeout = float(s.get("send_timeout", 10.0))
        self.join_timeout = float(s.get("join_timeout", 30.0))
        self.pacer = ChatPacer(self.outbox.pacer.rate, self.outbox.pacer.burst)
        self.outbox.pacer = self.pacer
        self.throttle = ConnectThrottle(
            burst=int(s.get("connect_burst", 5)),
            rate=float(s.get("connect_rate", 0.1)),
            path=self.state_dir / "cytube-connect-throttle.json",
        )
        self._session: _Session | None = None
        self._not_before = 0.0  # monotonic: no connection attempt before this
        self.history_skipped = 0
        self.unconfirmed = 0  # messages the server never answered (within send_timeout)
        self.login_refused = 0
        self.login_waits = 0  # logins tried again later (guest login delay, name still in use)

    # ------------------------------------------------------------------ pacing and backoff

    def reconnect_delay(self, attempt: int) -> float:
        backoff = super().reconnect_delay(attempt)
        hold = max(self._not_before - time.monotonic(), self.throttle.wait_time())
        return max(backoff, hold + 0.25)

    def split(self, message: OutgoingMessage) -> list[OutgoingMessage]:
        return [dataclasses.replace(message, text=piece) for piece in split_utf16(message.text, self.limit)]

    def _update_pace(self, session: _Session) -> None:
        limits = MIN_ANTIFLOOD
        if session.options.get("chat_antiflood") and session.rank < 2:
            limits = ChatLimits.from_params(session.options.get("chat_antiflood_params")) or limits
        self.pacer.use(limits)

    # ------------------------------------------------------------------ the session

    async def _socket_url(self, http: aiohttp.ClientSession) -> str:
        url = f"{self.server}/socketconfig/{quote(self.channel)}.json"
        async with http.get(url, ssl=self.tls_verify, timeout=aiohttp.ClientTimeout(total=30)) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError as exc:
                raise PlatformError(f"{url}: HTTP {response.status}, not JSON") from exc
            if response.status != 200:
                error = body.get("error") if isinstance(body, dict) else None
                raise PlatformError(f"{url}: HTTP {response.status} {error or ''}".rstrip())
        servers = body.get("servers") if isinstance(body, dict) else None
        entries = [e for e in servers or () if isinstance(e, dict) and isinstance(e.get("url"), str)]
        if not entries:
            raise PlatformError(f"{url}: no socket.io server offered")
        secure = [e for e in entries if e.get("secure")]
        if urlsplit(self.server).scheme == "https":
            if secure:
                return str(secure[0]["url"])
            if self.secret("password"):
                raise PlatformError(f"{url}: only insecure servers offered; not sending a password")
            logger.warning("%s: %s offers no secure socket server; connecting in the clear", self.name, url)
        return str(entries[0]["url"])

    async def run_session(self) -> None:
        wait = max(self._not_before - time.monotonic(), self.throttle.wait_time())
        if wait > 0:  # the first session of a process restarted in a hurry, too
            logger.info("%s: waiting %.1f s for CyTube's connection throttle", self.name, wait)
            await asyncio.sleep(wait)
        # No total timeout on the session: its WebSocket lives as long as the connection.
        timeout = aiohttp.ClientTimeout(total=None, connect=30)
        async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "rosey-bot"}) as http:
            socket_url = await self._socket_url(http)
            client = socketio.AsyncClient(
                reconnection=False,  # one reconnect loop: the base's
                ssl_verify=self.tls_verify,
                http_session=http,
                handle_sigint=False,
                logger=False,
                engineio_logger=False,
                websocket_extra_options={"timeout": aiohttp.ClientWSTimeout(ws_close=_WS_CLOSE)},
            )
            session = _Session(client, http)
            client.on("connect", lambda: session.push("connect", None))
            client.on("disconnect", lambda *reason: session.push("disconnect", reason))
            client.on("connect_error", lambda data=None: self._on_connect_error(session, data))
            client.on("*", lambda event, *args: session.push(event, args[0] if args else None))
            self.throttle.take()
            try:
                try:
                    await asyncio.wait_for(
                        client.connect(socket_url, transports=self.transports, wait_timeout=15), 30
                    )
                except socketio.exceptions.ConnectionError as exc:
                    why = session.connect_error or str(exc)
                    if "Rate limit exceeded" in why or "Too many connections" in why:
                        self.throttle.refuse()
                        raise PlatformError(f"{socket_url} refused the connection: {why}") from exc
                    raise PlatformError(f"{socket_url}: {why}{self._port_hint(socket_url)}") from exc
                self._session = session
                await client.emit("joinChannel", {"name": self.channel})
                await self._login(session)
                await self._pump(session)
            finally:
                session.closed = True
                self._session = None
                self.set_connected(False)
                session.fail_pending()
                with contextlib.suppress(Exception):
                    await client.disconnect()
                # After a ping timeout python-engineio forgets its WebSocket without closing it
                # (its connection would leak): close it here, waiting at most ws_close.
                ws = getattr(client.eio, "ws", None)
                if ws is not None and not ws.closed:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(), _WS_CLOSE + 1)

    def _port_hint(self, socket_url: str) -> str:
        """Where the socket server listens on another port than ``server``, the sandbox allows it
        only if the operator listed it in ``ports``: say so."""
        try:
            socket_port = urlsplit(socket_url).port or (443 if socket_url.startswith("https") else 80)
            server_port = urlsplit(self.server).port or (443 if self.server.startswith("https") else 80)
        except ValueError:
            return ""
        if socket_port == server_port:
            return ""
        return (
            f" (the socket server is on port {socket_port}: list it in"
            f" ports = [{socket_port}] of [adapters.{self.name}])"
        )

    def _on_connect_error(self, session: _Session, data: Any) -> None:
        if isinstance(data, Mapping):
            session.connect_error = str(data.get("message") or data)
        elif data is not None:
            session.connect_error = str(data)

    async def _login(self, session: _Session) -> None:
        frame: dict[str, str] = {"name": self.user}
        password = self.secret("password")
        if password:
            frame["pw"] = password
        await session.client.emit("login", frame)

    async def _pump(self, session: _Session) -> None:
        """Handle the session's events in order until the connection ends."""
        deadline = time.monotonic() + self.join_timeout
        relogin_at: float | None = None
        name_in_use = 0
        while True:
            now = time.monotonic()
            if not (session.joined and session.logged_in) and relogin_at is None and now > deadline:
                raise TimeoutError(f"not in channel {self.channel} after {self.join_timeout:g} s")
            if relogin_at is not None and now >= relogin_at:
                relogin_at = None
                deadline = now + self.join_timeout
                await self._login(session)
            waits = [30.0]
            if relogin_at is not None:
                waits.append(relogin_at - now)
            elif not (session.joined and session.logged_in):
                waits.append(deadline - now)
            try:
                event, data = await asyncio.wait_for(session.events.get(), max(0.05, min(waits)))
            except TimeoutError:
                if not session.client.connected:
                    return  # dropped without a disconnect event: reconnect all the same
                continue
            if event == "disconnect":
                logger.info("%s: disconnected from %s", self.name, self.server)
                return
            if event == "login":
                retry = self._on_login(session, data, name_in_use)
                if retry is not None:
                    self.login_waits += 1
                    name_in_use += retry[1]
                    relogin_at = time.monotonic() + retry[0]
                    continue
            else:
                try:
                    await self._on_event(session, event, data)
                except (ConnectionError, asyncio.CancelledError):
                    raise  # a refused login, the bus gone: end the session
                except Exception:  # odd data from the server never ends the adapter
                    logger.exception("%s: could not handle CyTube event %r", self.name, event)
            if session.joined and session.logged_in and not self.outbox.connected.is_set():
                logger.info(
                    "%s: in CyTube channel %s as %s (rank %g)",
                    self.name,
                    self.channel,
                    session.name,
                    session.rank,
                )
                self.set_connected(True)

    def _on_login(self, session: _Session, data: Any, name_in_use: int) -> tuple[float, int] | None:
        """A login answer; returns (seconds to wait before trying again, 1 if because the name
        is in use), or None."""
        if not isinstance(data, Mapping):
            return None
        if data.get("success"):
            session.logged_in = True
            session.name = clean_text(data.get("name") or self.user, newlines=False) or self.user
            return None
        error = clean_text(data.get("error") or "unknown error", newlines=False)
        guest_delay = _GUEST_DELAY.search(error)
        if guest_delay and not self.secret("password"):
            delay = float(guest_delay.group(1)) + 1.0
            logger.warning("%s: CyTube: %s Trying again in %.0f s", self.name, error, delay)
            return delay, 0
        if "already in use" in error and name_in_use < _NAME_IN_USE_TRIES:
            logger.warning("%s: CyTube: %s Trying again in %.0f s", self.name, error, _NAME_IN_USE_RETRY)
            return _NAME_IN_USE_RETRY, 1
        # A wrong password or a registered name without one: retrying soon will not help.
        self.login_refused += 1
        self._not_before = time.monotonic() + self.login_retry
        logger.error(
            "%s: CyTube refused the login of %r: %s. Not trying again for %.0f s: check the user "
            "name and password of [adapters.%s].",
            self.name,
            self.user,
            error,
            self.login_retry,
            self.name,
        )
        raise PlatformError(f"CyTube refused the login: {error}")

    async def _on_event(self, session: _Session, event: str, data: Any) -> None:
        if event == "chatMsg":
            await self._on_chat(session, data)
        elif event == "pm":
            await self._on_pm(session, data)
        elif event == "cooldown":
            if not session.resolve("cooldown", data):
                ms = _number(data)
                self.pacer.throttled(ms if ms is not None else 1000.0)
        elif event in ("errorMsg", "noflood"):
            text = clean_text(data.get("msg") if isinstance(data, Mapping) else data, newlines=False)
            if not session.resolve(event, text):
                logger.warning("%s: CyTube says: %s", self.name, text)
        elif event == "rank":
            rank = _number(data)
            if rank is not None:
                session.rank = rank
                self._update_pace(session)
        elif event == "channelOpts":
            if isinstance(data, Mapping):
                session.options = dict(data)
                self._update_pace(session)
        elif event == "userlist":
            self._on_userlist(session, data)
        elif event == "addUser":
            await self._on_add_user(session, data)
        elif event == "userLeave":
            await self._on_user_leave(session, data)
        elif event == "setUserRank":
            self._on_set_rank(session, data)
        elif event == "kick":
            reason = clean_text(data.get("reason") if isinstance(data, Mapping) else data, newlines=False)
            logger.warning("%s: kicked from CyTube channel %s: %s", self.name, self.channel, reason)
            if "Duplicate login" in reason:  # another client logged in as us: do not fight it
                self._not_before = max(self._not_before, time.monotonic() + 60.0)
        elif event == "needPassword":
            self._not_before = time.monotonic() + self.login_retry
            logger.error(
                "%s: CyTube channel %s has a password; channel passwords are not supported",
                self.name,
                self.channel,
            )
            raise PlatformError("the CyTube channel needs a password")

    # ------------------------------------------------------------------ users

    def _user(self, session: _Session, name: str) -> ChatUser:
        known = session.ranks.get(name.lower())
        role = role_for_rank(known[1]) if known else Role.USER
        return ChatUser(id=name, name=name, roles=(role,) if role > Role.USER else ())

    def _is_me(self, session: _Session, name: str) -> bool:
        return name.lower() == (session.name or self.user).lower()

    @staticmethod
    def _entry(data: Any) -> tuple[str, float] | None:
        if not isinstance(data, Mapping):
            return None
        name = clean_text(data.get("name"), max_chars=64, newlines=False)
        if not name:
            return None
        return name, _number(data.get("rank")) or 0.0

    def _on_userlist(self, session: _Session, data: Any) -> None:
        session.ranks = {}
        for raw in data if isinstance(data, list) else ():
            entry = self._entry(raw)
            if entry:
                session.ranks[entry[0].lower()] = entry
        if not session.joined:
            session.joined = True
            if session.history_skipped:
                logger.info("%s: skipped %d message(s) of chat history", self.name, session.history_skipped)

    async def _on_add_user(self, session: _Session, data: Any) -> None:
        entry = self._entry(data)
        if entry is None:
            return
        is_new = entry[0].lower() not in session.ranks
        session.ranks[entry[0].lower()] = entry
        if is_new and session.joined and not self._is_me(session, entry[0]):
            await self.emit(ChatEventType.USER_JOIN, channel=self.channel, user=self._user(session, entry[0]))

    async def _on_user_leave(self, session: _Session, data: Any) -> None:
        entry = self._entry(data)
        if entry is None:
            return
        user = self._user(session, entry[0])
        known = session.ranks.pop(entry[0].lower(), None)
        if known and session.joined and not self._is_me(session, entry[0]):
            await self.emit(ChatEventType.USER_LEAVE, channel=self.channel, user=user)

    def _on_set_rank(self, session: _Session, data: Any) -> None:
        entry = self._entry(data)
        if entry is None:
            return
        session.ranks[entry[0].lower()] = entry
        if self._is_me(session, entry[0]):
            session.rank = entry[1]
            self._update_pace(session)

    # ------------------------------------------------------------------ messages in

    @staticmethod
    def _message(data: Any) -> tuple[str, str, Mapping[str, Any], float | None] | None:
        if not isinstance(data, Mapping):
            return None
        name = data.get("username")
        msg = data.get("msg")
        if not isinstance(name, str) or not isinstance(msg, str):
            return None
        meta = data.get("meta")
        return name, msg, meta if isinstance(meta, Mapping) else {}, _number(data.get("time"))

    async def _on_chat(self, session: _Session, data: Any) -> None:
        parsed = self._message(data)
        if parsed is None:
            return
        name, msg, meta, stamp = parsed
        if not session.joined:  # replayed history: sent before the userlist
            session.history_skipped += 1
            self.history_skipped += 1
            return
        if self._is_me(session, name):  # our own message, broadcast back: its confirmation
            session.resolve("chatMsg", data)
            return
        if not _USER_NAME.match(name) or meta.get("shadow"):
            return  # "[server]" notices; shadow-muted users' messages (moderators see them)
        await self.emit(
            ChatEventType.MESSAGE,
            channel=self.channel,
            user=self._user(session, name),
            text=html_to_text(msg),
            message_id=f"{stamp:.0f}:{name}" if stamp is not None else None,
        )

    async def _on_pm(self, session: _Session, data: Any) -> None:
        parsed = self._message(data)
        if parsed is None:
            return
        name, msg, _meta, stamp = parsed
        if self._is_me(session, name):  # the copy of a PM we sent
            session.resolve("pm", data)
            return
        if not _USER_NAME.match(name):
            return
        await self.emit(
            ChatEventType.PRIVATE_MESSAGE,
            channel=name,
            user=self._user(session, name),
            text=html_to_text(msg),
            message_id=f"{stamp:.0f}:{name}" if stamp is not None else None,
        )

    # ------------------------------------------------------------------ messages out

    async def deliver(self, message: OutgoingMessage) -> None:
        if message.channel is not None:
            if message.channel.lower() != self.channel.lower():
                raise DeliveryFailed(f"not in CyTube channel {message.channel!r} (only {self.channel!r})")
            event, frame = "chatMsg", {"msg": message.text, "meta": {}}
        else:
            to = message.private_to or ""
            if not _USER_NAME.match(to):
                raise DeliveryFailed(f"{to!r} is not a CyTube user name")
            event, frame = "pm", {"to": to, "msg": message.text, "meta": {}}
        for _ in range(20):
            session = self._session
            if session is None or session.closed or not session.logged_in:
                raise ConnectionError("not connected to CyTube")
            if event == "pm" and self._is_me(session, str(frame["to"])):
                raise DeliveryFailed("a private message to the bot itself")
            outcome, data = await self._send(session, event, frame)
            if outcome == event or outcome == "unconfirmed":
                return
            if outcome == "cooldown":
                ms = _number(data)
                self.pacer.throttled(ms if ms is not None else 1000.0)
                logger.info("%s: CyTube throttled a message; sending it again", self.name)
                await self.pacer.wait()
                continue
            raise DeliveryFailed(f"CyTube refused it: {data}")  # errorMsg, noflood (muted)
        raise DeliveryFailed("CyTube kept throttling it")

    async def _send(self, session: _Session, event: str, frame: dict[str, Any]) -> tuple[str, Any]:
        """Emit one message and wait for the server's verdict on it."""
        pending = _Pending(event, asyncio.get_running_loop().create_future())
        session.live = pending
        try:
            await session.client.emit(event, frame)
            return await asyncio.wait_for(pending.future, self.send_timeout)
        except TimeoutError:
            if session.closed or not session.client.connected:
                raise ConnectionError("the CyTube connection was lost") from None
            # The server drops some messages without a word (the bot may not chat here, or a
            # filter ate it). Nothing to retry: say so and go on.
            self.unconfirmed += 1
            logger.warning(
                "%s: CyTube did not confirm a %s within %.0f s (may the bot chat in %s?)",
                self.name,
                event,
                self.send_timeout,
                self.channel,
            )
            return "unconfirmed", None
        finally:
            if session.live is pending:
                session.live = None

    async def close_session(self) -> None:
        session = self._session
        if session is not None:
            with contextlib.suppress(Exception):
                await session.client.disconnect()
