"""Rosey on Slack: a bot user connected with slack-bolt in Socket Mode (no public URL needed).

The adapter holds two tokens (``[adapters.NAME] token_env`` / ``token_file`` for the bot token
``xoxb-...``, ``app_token_env`` / ``app_token_file`` for the app-level token ``xapp-...`` with
``connections:write``). Events arrive over the Socket Mode websocket (``AsyncSocketModeHandler``,
aiohttp based; bolt acknowledges every envelope); replies go out through the Web API
(``chat.postMessage``), paced by the outbox and, on a 429, by slack_sdk's
``AsyncRateLimitErrorRetryHandler``, which waits the ``Retry-After`` Slack sends.

What plugins see:

* ``channel`` is the conversation id (``C0123...``); a direct message (``im``) is a
  ``private_message`` whose channel is the sender's user id, answered through
  ``conversations.open``. A message in a thread carries ``thread_id`` = its ``thread_ts`` and is
  answered in that thread.
* ``@rosey echo hi`` (the bot's mention at the start) is the command ``!echo hi``: the mention
  stands for the command prefix (setting ``prefix``, default ``"!"``: keep it equal to
  ``[chat] prefix``).
* Slack markup becomes plain text: ``<@U123>`` -> ``@name`` (``users.info``, cached),
  ``<#C123|general>`` -> ``#general``, ``<https://x|label>`` -> ``label (https://x)``,
  ``<!here>`` -> ``@here``, and ``&amp;`` ``&lt;`` ``&gt;`` unescaped. Outbound, ``&``, ``<`` and
  ``>`` are escaped, so what a plugin writes is shown as written, never read as a mention or link.
* Roles: a workspace admin or owner (``users.info``: ``is_admin``, ``is_owner``,
  ``is_primary_owner``) is ``admin``; everyone else is ``user``.
* The bot's own messages, other bots' messages and edits/deletions/other message subtypes are
  ignored; ``channel_join`` / ``channel_leave`` become ``user_join`` / ``user_leave``.

Reconnects: slack_sdk's Socket Mode client reconnects its websocket by itself (Slack's
``disconnect`` messages, a closed socket, failed pings); the Web API does not need the websocket,
so replies keep flowing meanwhile. The base's session loop starts a fresh session (new
``auth.test``, new Socket Mode client) only when the Web API fails or the websocket has stayed
down for ``socket_grace`` seconds; the old client is closed first, so the two loops never run
at once.

Plugin-process side: imports the stdlib, ``core``, the adapter base and, inside this module
only, slack_bolt / slack_sdk / aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from typing import Any, ClassVar

from bot.rosey.adapters.chat_adapter import ChatAdapter
from bot.rosey.adapters.outbox import DeliveryFailed
from bot.rosey.core.chat import ChatEventType, ChatUser, OutgoingMessage, Role

__all__ = ["SlackAdapter", "from_slack_markup", "to_slack_text"]

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://slack.com/api/"
#: Seconds a user's name and role are reused before ``users.info`` is asked again.
USER_CACHE_SECONDS = 300.0
#: Web API errors that mean "try again later", not "this message can never be sent".
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
#: Web API errors that mean the token itself no longer works (the session is re-established).
_AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"})
#: Message subtypes that are something a person said.
_SAID_SUBTYPES = frozenset({None, "", "thread_broadcast", "file_share", "me_message"})

_MARKUP = re.compile(r"<([^<>]*)>")


def _unescape(text: str) -> str:
    """Slack escapes exactly these three in message text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def to_slack_text(text: str) -> str:
    """Plugin text as Slack must receive it to show it as written (no mentions, no links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def from_slack_markup(
    text: str,
    user_name: dict[str, str] | None = None,
    channel_name: dict[str, str] | None = None,
) -> str:
    """Slack's markup as plain text; ``user_name``/``channel_name`` map ids the caller resolved."""
    users = user_name or {}
    channels = channel_name or {}

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):  # <@U123> or <@U123|name>
            uid = target[1:]
            return "@" + (users.get(uid) or label or uid)
        if target.startswith("#"):  # <#C123|general> or <#C123>
            cid = target[1:]
            return "#" + (label or channels.get(cid) or cid)
        if target.startswith("!"):  # <!here>, <!channel>, <!subteam^S1|@team>, <!date^...|fallback>
            if label:
                return label
            special = target[1:].split("^", 1)[0]
            return "@" + special
        if not label:
            return target.removeprefix("mailto:")
        shown = target.removeprefix("mailto:")
        if label in (target, shown):
            return label
        return f"{label} ({shown})"

    return _unescape(_MARKUP.sub(replace, text))


class _Cache:
    """A small time-bounded LRU map."""

    def __init__(self, size: int = 2000, ttl: float | None = None) -> None:
        self.size = size
        self.ttl = ttl
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        if self.ttl is not None and time.monotonic() - item[0] > self.ttl:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: str, value: Any) -> None:
        self._items[key] = (time.monotonic(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class SlackAdapter(ChatAdapter):
    """A Slack workspace through one bot user, in Socket Mode."""

    platform_type = "slack"
    #: Slack recommends at most 4,000 characters per message (it truncates beyond 40,000); even
    #: with every character escaped (``&amp;``) a piece stays under the hard limit.
    max_message_chars = 4000
    keeps_newlines = True
    #: Slack allows about one message per second per channel, with short bursts.
    default_rate = 1.0
    default_burst = 3
    #: Seconds the websocket may stay down (slack_sdk reconnecting) before a fresh session.
    socket_grace: ClassVar[float] = 60.0
    #: slack_sdk's websocket ping interval (a silent socket is replaced after four of them).
    ping_interval: ClassVar[float] = 5.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for noisy in ("slack_bolt", "slack_sdk"):  # they log request details at DEBUG/INFO
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.api_base = str(self.settings.get("api_base") or DEFAULT_API_BASE)
        if not self.api_base.endswith("/"):
            self.api_base += "/"
        self.prefix = str(self.settings.get("prefix") or "!")
        allowed = self.settings.get("channels") or []
        if isinstance(allowed, str):
            allowed = [allowed]
        self._allowed = {str(c).lstrip("#") for c in allowed}
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self._web: Any = None  # slack_sdk AsyncWebClient of the current session
        self._handler: Any = None  # slack_bolt AsyncSocketModeHandler of the current session
        self._lost: asyncio.Event | None = None
        self._users = _Cache(ttl=USER_CACHE_SECONDS)
        self._channels = _Cache(ttl=USER_CACHE_SECONDS)
        self._dms = _Cache()  # user id -> im channel id
        self._seen = _Cache(size=1000)  # "channel/ts" already handled (message + app_mention)
        self.envelopes = 0  # events received (all acknowledged by bolt)

    # ------------------------------------------------------------------ session

    async def run_session(self) -> None:
        import aiohttp
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
        from slack_bolt.app.async_app import AsyncApp
        from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
        from slack_sdk.web.async_client import AsyncWebClient

        token, app_token = self.secret("token"), self.secret("app_token")
        if not token or not app_token:
            raise RuntimeError(
                "the slack adapter needs token_env/token_file and app_token_env/app_token_file"
            )
        self._lost = lost = asyncio.Event()
        session = aiohttp.ClientSession()
        handler = None
        try:
            web = AsyncWebClient(
                token=token,
                base_url=self.api_base,
                session=session,
                retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=5)],
            )
            auth = await web.auth_test()
            self.bot_user_id = auth.get("user_id")
            self.bot_id = auth.get("bot_id")
            app = AsyncApp(client=web, logger=logger)
            app.event(re.compile(".*"))(self._on_bolt_event)
            handler = AsyncSocketModeHandler(app, app_token, ping_interval=self.ping_interval)
            self._web, self._handler = web, handler
            self.set_connected(True)  # replies go through the Web API, which answers
            # The first URL here, so that a refused app token ends this session (the base backs
            # off) instead of slack_sdk's connect() retrying it forever; then the websocket.
            handler.client.wss_uri = await handler.client.issue_new_wss_url()
            await asyncio.wait_for(handler.connect_async(), self.socket_grace)  # type: ignore[no-untyped-call]
            logger.info("%s: connected to Slack as %s (%s)", self.name, auth.get("user"), self.bot_user_id)
            down_since: float | None = None
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), 1.0)
                if await handler.client.is_connected():
                    down_since = None
                elif down_since is None:
                    down_since = time.monotonic()
                elif time.monotonic() - down_since > self.socket_grace:
                    raise ConnectionError("the Socket Mode websocket stayed down; starting afresh")
        finally:
            self.set_connected(False)
            self._web = self._handler = None
            if handler is not None:
                with contextlib.suppress(Exception):
                    await handler.close_async()  # type: ignore[no-untyped-call]
            await session.close()

    async def close_session(self) -> None:
        if self._lost is not None:
            self._lost.set()

    # ------------------------------------------------------------------ inbound

    async def _on_bolt_event(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        self.envelopes += 1
        try:
            await self._on_event(event)
        except Exception:
            logger.exception("%s: could not handle a %s event", self.name, event.get("type"))

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind not in ("message", "app_mention"):
            return
        subtype = event.get("subtype")
        user = event.get("user")
        channel = event.get("channel")
        if not isinstance(user, str) or not isinstance(channel, str):
            return
        if user == self.bot_user_id or (event.get("bot_id") and event.get("bot_id") == self.bot_id):
            return  # our own
        if event.get("bot_id") or event.get("bot_profile") or subtype == "bot_message":
            return  # another bot: never answer bots (no loops)
        is_dm = event.get("channel_type") == "im" or (kind == "app_mention" and channel.startswith("D"))
        if not is_dm and not await self._allowed_channel(channel):
            return
        if subtype in ("channel_join", "group_join", "channel_leave", "group_leave"):
            joined = subtype.endswith("join")
            await self.emit(
                ChatEventType.USER_JOIN if joined else ChatEventType.USER_LEAVE,
                channel=channel,
                user=await self._user(user),
            )
            return
        if subtype not in _SAID_SUBTYPES:
            return  # message_changed, message_deleted, channel_topic, ...
        ts = str(event.get("ts") or "")
        key = f"{channel}/{ts}"
        if ts and self._seen.get(key):
            return  # the same message as a `message` and an `app_mention` event
        self._seen.put(key, True)
        text = await self._plain_text(str(event.get("text") or ""))
        thread = event.get("thread_ts")
        await self.emit(
            ChatEventType.PRIVATE_MESSAGE if is_dm else ChatEventType.MESSAGE,
            channel=user if is_dm else channel,
            user=await self._user(user),
            text=text,
            message_id=ts or None,
            thread_id=str(thread) if thread else None,
        )

    async def _plain_text(self, raw: str) -> str:
        """Mention of the bot at the start -> the prefix; the rest of the markup -> plain text."""
        if self.bot_user_id:
            mention = re.match(rf"\s*<@{re.escape(self.bot_user_id)}(?:\|[^>]*)?>[:,]?\s*", raw)
            if mention and raw[mention.end() :].strip():
                rest = raw[mention.end() :]
                raw = rest if rest.startswith(self.prefix) else self.prefix + rest
        names: dict[str, str] = {}
        for uid in set(re.findall(r"<@([A-Z0-9]+)>", raw)):
            names[uid] = (await self._user(uid)).name
        channels: dict[str, str] = {}
        for cid in set(re.findall(r"<#([A-Z0-9]+)>", raw)):
            channels[cid] = await self._channel_name(cid) or cid
        return from_slack_markup(raw, names, channels)

    async def _user(self, uid: str) -> ChatUser:
        cached = self._users.get(uid)
        if isinstance(cached, ChatUser):
            return cached
        from slack_sdk.errors import SlackApiError

        user = ChatUser(id=uid, name=uid)
        if self._web is not None:
            try:
                info = (await self._web.users_info(user=uid)).get("user") or {}
            except SlackApiError as exc:
                logger.info("%s: users.info %s failed: %s", self.name, uid, exc.response.get("error"))
            else:
                profile = info.get("profile") or {}
                name = profile.get("display_name") or info.get("real_name") or info.get("name") or uid
                admin = any(info.get(k) for k in ("is_admin", "is_owner", "is_primary_owner"))
                user = ChatUser(id=uid, name=str(name), roles=(Role.ADMIN,) if admin else ())
                self._users.put(uid, user)
        return user

    async def _channel_name(self, cid: str) -> str | None:
        cached = self._channels.get(cid)
        if isinstance(cached, str):
            return cached
        if self._web is None:
            return None
        from slack_sdk.errors import SlackApiError

        try:
            info = (await self._web.conversations_info(channel=cid)).get("channel") or {}
        except SlackApiError as exc:
            logger.info("%s: conversations.info %s failed: %s", self.name, cid, exc.response.get("error"))
            return None
        name = info.get("name")
        if isinstance(name, str) and name:
            self._channels.put(cid, name)
            return name
        return None

    async def _allowed_channel(self, cid: str) -> bool:
        if not self._allowed or cid in self._allowed:
            return True
        name = await self._channel_name(cid)
        return name is not None and name in self._allowed

    # ------------------------------------------------------------------ outbound

    async def deliver(self, message: OutgoingMessage) -> None:
        await self._send(message)

    # files (6d, issue 13): Slack's current upload flow (files.getUploadURLExternal, the upload,
    # files.completeUploadExternal: slack_sdk's files_upload_v2); the caption is the initial comment.
    supports_files: ClassVar[bool] = True

    async def deliver_file(self, message: OutgoingMessage, data: bytes) -> None:
        await self._send(message, data)

    async def _send(self, message: OutgoingMessage, data: bytes | None = None) -> None:
        import aiohttp
        from slack_sdk.errors import SlackApiError, SlackRequestError

        web = self._web
        if web is None:
            raise ConnectionError("not connected to Slack")
        method = "chat.postMessage" if data is None else "files.upload"
        try:
            channel = message.channel or await self._dm_channel(web, str(message.private_to))
            args: dict[str, Any] = {"channel": channel}
            if message.thread_id:
                args["thread_ts"] = message.thread_id
            if data is None:
                await web.chat_postMessage(text=to_slack_text(message.text), **args)
            else:
                name = message.file.name if message.file is not None else "file"
                if message.text and message.text != name:
                    args["initial_comment"] = to_slack_text(message.text)
                await web.files_upload_v2(file=data, filename=name, title=name, **args)
        except SlackRequestError as exc:  # the upload step itself failed (not an API answer)
            self._lose(f"{method}: {exc}")
            raise ConnectionError(f"Slack upload failed: {exc}") from None
        except SlackApiError as exc:
            error = str(exc.response.get("error") or exc.response.status_code)
            if error in _TRANSIENT_ERRORS or exc.response.status_code >= 500:
                self._lose(f"{method}: {error}")
                raise ConnectionError(f"Slack answered {error}") from None
            if error in _AUTH_ERRORS:
                self._lose(f"the bot token was refused ({error})")
            raise DeliveryFailed(f"Slack refused the message: {error}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._lose(f"the Web API is unreachable ({type(exc).__name__})")
            raise

    async def _dm_channel(self, web: Any, uid: str) -> str:
        cached = self._dms.get(uid)
        if isinstance(cached, str):
            return cached
        channel = (await web.conversations_open(users=uid)).get("channel") or {}
        cid = channel.get("id")
        if not isinstance(cid, str):
            raise DeliveryFailed(f"conversations.open gave no channel for {uid}")
        self._dms.put(uid, cid)
        return cid

    def _lose(self, why: str) -> None:
        """End the session (the base reconnects; the outbox keeps the message)."""
        logger.warning("%s: %s", self.name, why)
        if self._lost is not None:
            self._lost.set()
