"""Rosey on Matrix: the ``type = "matrix"`` adapter, on matrix-nio's asyncio client.

One session = log in, join the configured rooms, sync. The adapter runs its own sync loop
(not nio's ``sync_forever``) so that every failure ends the session and the base class
reconnects with backoff: a homeserver that stops and comes back is reconnected to by itself.

Never twice, never history (the sync token):
    After every sync the adapter stores ``next_batch`` in its state directory *before* it hands
    the sync's events on, so a crash never makes it handle a message twice. The very first start
    (no stored token) takes the initial sync as state only: the rooms' history is never read
    as commands. A restart syncs from the stored token: messages sent while the adapter was
    away are handled once, if they are at most ``catchup_max_age`` seconds old (default 300;
    older ones are skipped and counted in the log). In every timeline, what precedes the bot's
    own join is history and is skipped too. A sync that says its timeline was cut
    (``limited``) is completed from ``/messages`` back to the previous token, so a burst larger
    than one sync's page is not lost.

Rooms and people:
    ``rooms`` are joined at every start. An invite is accepted only when the ``auto_join``
    allow-list (or ``rooms``) lets its sender bring the bot there, and is otherwise refused
    (rejected on the homeserver, logged). A message in a room that is not in ``rooms`` and is
    either marked direct (``is_direct`` on the invite, or the bot's ``m.direct``) or has exactly
    two members is a PRIVATE_MESSAGE, whose channel is the sender's id (as on every platform);
    replies to it (``private_to``, or a channel that is a user id) go to the DM room that user
    last wrote from, else one the bot shares with them alone, else a new one (``is_direct``,
    trusted private chat, the user invited). Roles come from power
    levels. Notices (other bots), edits, emotes and media are not commands.

Saying things:
    Replies carry ``m.in_reply_to``; in a thread they carry ``m.thread`` (with
    ``is_falling_back`` and the thread's latest event when not a reply to one message). Text
    is sent as ``m.notice`` with a Markdown-rendered ``formatted_body`` (raw HTML never
    passes: see :mod:`.matrix_format`) and empty ``m.mentions`` so a plugin's text cannot ping
    the room. ``M_LIMIT_EXCEEDED`` (Synapse's ``rc_message``) is waited out as
    ``retry_after_ms`` says and the same transaction retried: nothing lost, nothing doubled.

End-to-end encryption is not supported (yet): an encrypted room is named in one warning
when the bot sees it, a message there is logged as unread (a warning the first time per
room), the room is told once in an unencrypted notice, and replies to it are refused
(logged by the outbox) instead of being lost silently.

Plugin-process side: the standard library, ``core``, the adapter base, and matrix-nio.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import nio  # type: ignore[import-untyped]

from bot.rosey.adapters.chat_adapter import ChatAdapter
from bot.rosey.adapters.matrix_events import (
    after_own_join,
    as_dict,
    creators_of,
    direct_map,
    message_content,
    privileged_creators,
    remember,
    timestamp,
)
from bot.rosey.adapters.matrix_format import render_markdown, strip_reply_fallback
from bot.rosey.adapters.matrix_settings import MatrixSettings, localpart, roles_for_level
from bot.rosey.adapters.matrix_state import MatrixState, Session
from bot.rosey.adapters.outbox import DeliveryFailed
from bot.rosey.core.chat import ChatEventType, ChatUser, OutgoingMessage
from bot.rosey.errors import PlatformError, RoseyError

__all__ = ["MatrixAdapter", "MatrixError"]

logger = logging.getLogger(__name__)

#: The sync filter: no presence, typing or receipts; the bot's m.direct; full member lists.
_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "account_data": {"types": ["m.direct"]},
    "room": {
        "timeline": {"limit": 50},
        "ephemeral": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "state": {"lazy_load_members": False},
    },
}
#: The very first sync is read as state only: one timeline event per room is plenty.
_FIRST_FILTER: dict[str, Any] = {**_FILTER, "room": {**_FILTER["room"], "timeline": {"limit": 1}}}
#: Most events one gap (a cut timeline) is completed with, per room and sync.
_MAX_GAP_EVENTS = 1000
#: What the homeserver answers for an access token it no longer accepts.
_TOKEN_REFUSED = ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN")
_ENCRYPTED_NOTICE = (
    "I cannot read this room: it is end-to-end encrypted, and Rosey does not support encrypted "
    "rooms yet. Please talk to me in an unencrypted room."
)


#: The homeserver refused or failed a request the session needs (the session ends and the adapter
#: reconnects with backoff).
MatrixError = PlatformError


class MatrixAdapter(ChatAdapter):
    """Connects one Matrix account to Rosey (see the module docstring)."""

    platform_type = "matrix"
    #: A whole event may be 65,536 bytes (JSON, with the HTML copy and the server's fields):
    #: 16,000 bytes of text leave room for both, even when JSON escaping doubles the text.
    max_message_bytes = 16_000
    keeps_newlines = True
    #: Synapse's default ``rc_message``: 10 at once, then one each 5 s. Faster settings work
    #: (M_LIMIT_EXCEEDED is waited out), slower ones never meet the server's limit.
    default_rate = 0.2
    default_burst = 10
    #: How long one sync waits on the homeserver for news (ms).
    sync_timeout_ms: ClassVar[int] = 30_000

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # nio logs every event it handles at INFO, and schema quibbles about error bodies it
        # returns anyway at WARNING: keep `rosey logs` readable unless someone set its level.
        for name, level in (("nio", logging.WARNING), ("nio.responses", logging.ERROR)):
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(level)
        self.config = MatrixSettings.from_mapping(self.settings)
        self.store = MatrixState(self.state_dir, homeserver=self.config.homeserver, user=self.config.user)
        self._client: Any = None
        self._session_task: asyncio.Task[Any] | None = None
        self._room_ids: dict[str, str] = {}  # configured entry (id or alias) -> room id
        self._direct: dict[str, list[str]] = {}  # m.direct: user -> DM rooms
        self._dm_rooms: dict[str, str] = {}  # user -> the DM room they last wrote in
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._senders: OrderedDict[str, str] = OrderedDict()  # event id -> sender (for mentions)
        self._thread_latest: OrderedDict[str, str] = OrderedDict()  # thread root -> latest event
        self._invites_done: set[str] = set()
        self._creators: dict[str, frozenset[str]] = {}  # room -> its creators (m.room.create)
        self._encrypted_seen: set[str] = set()
        self._encrypted_told: set[str] = set()
        self._last_txn: tuple[OutgoingMessage, str] | None = None
        # Counters (tests and the closing log line read them).
        self.rate_limited = 0  # M_LIMIT_EXCEEDED answers waited out
        self.skipped_old = 0  # missed messages older than catchup_max_age
        self.encrypted_unread = 0  # encrypted messages the bot could not read

    # ------------------------------------------------------------------ session

    async def run_session(self) -> None:
        self._session_task = asyncio.current_task()
        client = nio.AsyncClient(
            self.config.homeserver,
            self.config.user,
            config=nio.AsyncClientConfig(
                max_limit_exceeded=0,  # 429s come back to us: waited out here, counted, logged
                max_timeouts=2,  # then the session ends and the base reconnects with backoff
                request_timeout=30,
                store_sync_tokens=False,
                encryption_enabled=False,
            ),
        )
        self._client = client
        try:
            await self._log_in(client)
            await self._join_configured(client)
            since = self.store.load_sync_token()
            while not await self._sync(client, since=since, first=since is None, backlog=since is not None):
                pass  # rate-limited: the first sync must be taken in before any other
            self.set_connected(True)
            logger.info(
                "%s: connected to %s as %s (device %s), in %d room(s)",
                self.name,
                self.config.homeserver,
                client.user_id,
                client.device_id,
                len(client.rooms),
            )
            while True:
                await self._sync(client, since=client.next_batch)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MatrixError(f"homeserver {self.config.homeserver} unreachable: {exc!r}") from exc
        finally:
            self._client = None
            await client.close()

    async def close_session(self) -> None:
        task = self._session_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task}, timeout=5.0)

    async def _log_in(self, client: Any) -> None:
        token = self.secret("access_token")
        if token:
            client.access_token = token
            who = await client.whoami()
            if not isinstance(who, nio.WhoamiResponse):
                raise MatrixError(f"the homeserver refused the access token: {who}")
            if who.user_id != self.config.user:
                raise MatrixError(f"the access token is {who.user_id}'s, not {self.config.user}'s")
            client.restore_login(who.user_id, who.device_id or "", token)
            return
        password = self.secret("password")
        if not password:
            raise MatrixError("no credentials: set access_token_env/_file or password_env/_file")
        session = self.store.load_session()
        if session is not None:
            client.restore_login(session.user_id, session.device_id, session.access_token)
            who = await client.whoami()
            if isinstance(who, nio.WhoamiResponse):
                return
            if who.status_code not in _TOKEN_REFUSED:
                raise MatrixError(f"the homeserver could not check the stored session: {who}")
            logger.info("%s: the stored session was refused (%s); logging in again", self.name, who)
            self.store.forget_token(session)
            client.access_token = ""
        client.device_id = self.store.device_id() or ""  # the same device as before, if any
        response = await self._retrying(lambda: client.login(password, device_name=self.config.device_name))
        if not isinstance(response, nio.LoginResponse):
            raise MatrixError(f"password login as {self.config.user} failed: {response}")
        self.store.save_session(
            Session(
                user_id=response.user_id, device_id=response.device_id, access_token=response.access_token
            )
        )
        logger.info("%s: logged in as %s, device %s", self.name, response.user_id, response.device_id)

    async def _join_configured(self, client: Any) -> None:
        for entry in self.config.rooms:
            response = await self._retrying(_bind(client.join, entry))
            if isinstance(response, nio.JoinResponse):
                self._room_ids[entry] = response.room_id
            else:
                logger.warning("%s: could not join %s: %s", self.name, entry, response)

    async def _sync(
        self, client: Any, *, since: str | None, first: bool = False, backlog: bool = False
    ) -> bool:
        """One sync, taken in; False when the homeserver said to wait (and it was waited out)."""
        response = await client.sync(
            timeout=0 if (first or backlog) else self.sync_timeout_ms,
            sync_filter=_FIRST_FILTER if first else _FILTER,
            since=since,
            full_state=True if backlog else None,
        )
        if isinstance(response, nio.SyncError):
            if response.status_code == "M_LIMIT_EXCEEDED":
                self.rate_limited += 1
                await asyncio.sleep((response.retry_after_ms or 1000) / 1000)
                return False
            if backlog and response.status_code not in (None, *_TOKEN_REFUSED):
                logger.warning(
                    "%s: the stored sync token was refused (%s); starting afresh", self.name, response
                )
                self.store.forget_sync_token()
                return await self._sync(client, since=None, first=True)
            if response.status_code in _TOKEN_REFUSED and not self.secret("access_token"):
                session = self.store.load_session()
                if session is not None:
                    self.store.forget_token(session)
            raise MatrixError(f"sync failed: {response}")
        # Stored before the events go out: a crash never hands an event on twice.
        self.store.save_sync_token(response.next_batch)
        self.set_connected(True)  # (again, after a delivery failure cleared it)
        await self._take_in(client, response, since=since, history=first, backlog=backlog)
        return True

    # ------------------------------------------------------------------ inbound

    async def _take_in(
        self, client: Any, response: Any, *, since: str | None, history: bool, backlog: bool
    ) -> None:
        for event in response.account_data_events:
            source = getattr(event, "source", None) or {}
            if source.get("type") == "m.direct":
                self._direct = direct_map(source.get("content"))
        for room_id, info in response.rooms.invite.items():
            await self._consider_invite(client, room_id, info)
        for room_id in (*response.rooms.leave, *response.rooms.join):
            self._invites_done.discard(room_id)  # a later invite is considered afresh
        for room_id in response.rooms.leave:
            self._dm_rooms = {u: r for u, r in self._dm_rooms.items() if r != room_id}
            if room_id in self._room_ids.values():
                logger.warning(
                    "%s: no longer in room %s (rejoined at the next reconnect)", self.name, room_id
                )
        for room_id, info in response.rooms.join.items():
            room = client.rooms.get(room_id)
            if room is None:
                continue
            self._check_encrypted(room)
            for event in (*info.state, *info.timeline.events):
                source = getattr(event, "source", None) or {}
                if source.get("type") == "m.room.create" and isinstance(source.get("sender"), str):
                    self._creators[room_id] = creators_of(source)
            if history:
                continue
            events = [e.source for e in info.timeline.events if isinstance(getattr(e, "source", None), dict)]
            if info.timeline.limited and since and info.timeline.prev_batch:
                events = await self._gap(client, room_id, info.timeline.prev_batch, since, backlog) + events
            for source in after_own_join(events, client.user_id):
                try:
                    await self._take_event(room, source, backlog=backlog)
                except (asyncio.CancelledError, RoseyError):
                    raise  # the session (or the bus) is gone: end the session, reconnect
                except Exception:
                    logger.exception("%s: skipped an event it could not read in %s", self.name, room_id)
        if self.skipped_old and backlog:
            logger.info(
                "%s: skipped %d missed message(s) older than %g s",
                self.name,
                self.skipped_old,
                self.config.catchup_max_age,
            )

    async def _gap(
        self, client: Any, room_id: str, start: str, end: str, backlog: bool
    ) -> list[dict[str, Any]]:
        """The events a cut timeline left out (oldest first), fetched back to the last token."""
        fetched: list[dict[str, Any]] = []
        oldest_wanted = time.time() * 1000 - self.config.catchup_max_age * 1000
        while len(fetched) < _MAX_GAP_EVENTS:
            page = await client.room_messages(room_id, start=start, end=end, limit=100)
            if not isinstance(page, nio.RoomMessagesResponse) or not page.chunk:
                break
            fetched.extend(e.source for e in page.chunk if isinstance(getattr(e, "source", None), dict))
            if backlog and fetched and timestamp(fetched[-1]) < oldest_wanted:
                break
            if not page.end or page.end == start:
                break
            start = page.end
        fetched.reverse()
        return fetched

    async def _take_event(self, room: Any, source: Mapping[str, Any], *, backlog: bool) -> None:
        event_id, sender, kind = source.get("event_id"), source.get("sender"), source.get("type")
        if not isinstance(event_id, str) or not isinstance(sender, str):
            return
        if event_id in self._seen:
            return
        remember(self._seen, event_id, None)
        if backlog and timestamp(source) < (time.time() - self.config.catchup_max_age) * 1000:
            if kind == "m.room.message" and sender != self._client_user():
                self.skipped_old += 1
            return
        content = source.get("content")
        if not isinstance(content, dict):
            return
        if kind == "m.room.member":
            await self._take_membership(room, source, content)
        elif kind == "m.room.message":
            relation = content.get("m.relates_to")
            relation = relation if isinstance(relation, dict) else {}
            thread_id = relation.get("event_id") if relation.get("rel_type") == "m.thread" else None
            if isinstance(thread_id, str):
                remember(self._thread_latest, thread_id, event_id)
            if sender != self._client_user():
                await self._take_message(room, event_id, sender, content, relation)
        elif kind == "m.room.encrypted" and sender != self._client_user():
            await self._encrypted_message(room, sender)

    async def _take_message(
        self, room: Any, event_id: str, sender: str, content: Mapping[str, Any], relation: Mapping[str, Any]
    ) -> None:
        body = content.get("body")
        if content.get("msgtype") != "m.text" or not isinstance(body, str):
            return  # notices are other bots talking; emotes and media are not commands
        if relation.get("rel_type") == "m.replace" or "m.new_content" in content:
            return  # an edit: the original was handled already
        thread_id = relation.get("event_id") if relation.get("rel_type") == "m.thread" else None
        thread_id = thread_id if isinstance(thread_id, str) else None
        reply = relation.get("m.in_reply_to")
        reply_to = reply.get("event_id") if isinstance(reply, dict) else None
        if not isinstance(reply_to, str) or (thread_id and relation.get("is_falling_back") is True):
            reply_to = None  # in a thread, a fallback reply is no reply
        if reply_to:
            body = strip_reply_fallback(body)
        remember(self._senders, event_id, sender)
        private = self._is_private(room)
        if private:
            self._dm_rooms[sender] = room.room_id
        await self.emit(
            ChatEventType.PRIVATE_MESSAGE if private else ChatEventType.MESSAGE,
            channel=sender if private else room.room_id,  # private: the sender's id, as everywhere
            user=self._user(room, sender),
            text=body,
            message_id=event_id,
            thread_id=thread_id,
            reply_to=reply_to,
        )

    async def _take_membership(
        self, room: Any, source: Mapping[str, Any], content: Mapping[str, Any]
    ) -> None:
        target = source.get("state_key")
        if not isinstance(target, str) or target == self._client_user():
            return
        unsigned = source.get("unsigned")
        previous = unsigned.get("prev_content") if isinstance(unsigned, dict) else None
        before = previous.get("membership") if isinstance(previous, dict) else None
        now = content.get("membership")
        if now == "join" and before != "join":
            await self.emit(ChatEventType.USER_JOIN, channel=room.room_id, user=self._user(room, target))
        elif now in ("leave", "ban") and before == "join":
            name = previous.get("displayname") if isinstance(previous, dict) else None
            user = ChatUser(id=target, name=name if isinstance(name, str) and name else localpart(target))
            await self.emit(ChatEventType.USER_LEAVE, channel=room.room_id, user=user)

    def _user(self, room: Any, user_id: str) -> ChatUser:
        member = room.users.get(user_id)
        name = getattr(member, "display_name", None) or localpart(user_id)
        return ChatUser(id=user_id, name=str(name), roles=roles_for_level(self._power(room, user_id)))

    def _power(self, room: Any, user_id: str) -> int:
        """``user_id``'s power level; a creator's is infinite from room version 12 on."""
        if user_id in self._creators.get(room.room_id, ()) and privileged_creators(room.room_version):
            return 1 << 53
        return int(room.power_levels.get_user_level(user_id))

    def _is_private(self, room: Any) -> bool:
        room_id = room.room_id
        if room_id in self._room_ids.values():
            return False
        if any(room_id in rooms for rooms in self._direct.values()):
            return True
        return int(room.member_count) == 2

    def _client_user(self) -> str:
        return self._client.user_id if self._client is not None else self.config.user

    async def _consider_invite(self, client: Any, room_id: str, info: Any) -> None:
        if room_id in self._invites_done:
            return
        self._invites_done.add(room_id)
        inviter, direct = "", False
        for event in info.invite_state:
            source = getattr(event, "source", None) or {}
            content = as_dict(source.get("content"))
            if source.get("type") == "m.room.member" and source.get("state_key") == client.user_id:
                inviter = str(source.get("sender") or "")
                direct = content.get("is_direct") is True
        aliases = await self._aliases_of(client, room_id)
        allowed = self.config.auto_join_decision(
            room_id=room_id,
            inviter=inviter,
            room_aliases=aliases,
            configured=room_id in self._room_ids.values(),
        )
        if allowed is None:
            logger.warning(
                "%s: refused an invite to %s from %s (not allowed by auto_join)", self.name, room_id, inviter
            )
            await self._retrying(lambda: client.room_leave(room_id))
            return
        response = await self._retrying(lambda: client.join(room_id))
        if not isinstance(response, nio.JoinResponse):
            logger.warning(
                "%s: could not join %s on invite from %s: %s", self.name, room_id, inviter, response
            )
            return
        logger.info("%s: joined %s on invite from %s (allowed by %r)", self.name, room_id, inviter, allowed)
        if direct:
            await self._mark_direct(client, inviter, room_id)

    async def _aliases_of(self, client: Any, room_id: str) -> list[str]:
        """Which allow-listed aliases point at ``room_id`` (asked of the directory, not the invite)."""
        found = []
        for entry in self.config.auto_join:
            if entry.startswith("#"):
                response = await client.room_resolve_alias(entry)
                if isinstance(response, nio.RoomResolveAliasResponse) and response.room_id == room_id:
                    found.append(entry)
        return found

    def _check_encrypted(self, room: Any) -> None:
        if room.encrypted and room.room_id not in self._encrypted_seen:
            self._encrypted_seen.add(room.room_id)
            logger.warning(
                "%s: room %s (%s) is end-to-end encrypted: encrypted rooms are not supported yet; "
                "Rosey cannot read commands there nor answer in it",
                self.name,
                room.room_id,
                room.canonical_alias or room.display_name,
            )

    async def _encrypted_message(self, room: Any, sender: str) -> None:
        self.encrypted_unread += 1
        first = room.room_id not in self._encrypted_told
        logger.log(
            logging.WARNING if first else logging.INFO,
            "%s: could not read a message from %s in %s: the room is end-to-end encrypted, "
            "which is not supported yet",
            self.name,
            sender,
            room.room_id,
        )
        if first:
            self._encrypted_told.add(room.room_id)
            if self.config.encrypted_notice and self._client is not None:
                content = {"msgtype": "m.notice", "body": _ENCRYPTED_NOTICE, "m.mentions": {}}
                client = self._client
                response = await self._retrying(
                    lambda: client.room_send(room.room_id, "m.room.message", content)
                )
                if not isinstance(response, nio.RoomSendResponse):
                    logger.warning(
                        "%s: could not tell %s it is not read: %s", self.name, room.room_id, response
                    )

    # ------------------------------------------------------------------ outbound

    async def deliver(self, message: OutgoingMessage) -> None:
        client = self._client
        if client is None:
            raise MatrixError("not connected to the homeserver")
        try:
            await self._deliver(client, message)
        finally:
            if client is not self._client:  # the session ended meanwhile: nio may have opened
                await client.close()  # a new HTTP session for a retry; close it too

    # files (6d, issue 13): uploaded to the media repository, then an m.file / m.image event
    # (its body the caption, ``filename`` the name) answering where the command was said.
    supports_files: ClassVar[bool] = True

    async def deliver_file(self, message: OutgoingMessage, data: bytes) -> None:
        client = self._client
        if client is None:
            raise MatrixError("not connected to the homeserver")
        try:
            await self._deliver(client, message, data)
        finally:
            if client is not self._client:
                await client.close()

    async def _file_content(self, client: Any, message: OutgoingMessage, data: bytes) -> dict[str, Any]:
        ref = message.file
        assert ref is not None
        uploaded, _ = await self._retrying(
            lambda: client.upload(
                io.BytesIO(data), content_type=ref.mime, filename=ref.name, filesize=len(data)
            )
        )
        if not isinstance(uploaded, nio.UploadResponse):
            _raise_for(uploaded, f"uploading {ref.name}")
        image = ref.mime.startswith("image/")
        content = self._content(dataclasses.replace(message, text=message.text or ref.name))
        content.pop("format", None), content.pop("formatted_body", None)
        content.update(
            msgtype="m.image" if image else "m.file",
            filename=ref.name,
            url=uploaded.content_uri,
            info={"mimetype": ref.mime, "size": len(data)},
        )
        return content

    async def _deliver(self, client: Any, message: OutgoingMessage, data: bytes | None = None) -> None:
        room_id = await self._target_room(client, message)
        room = client.rooms.get(room_id)
        if room is not None and room.encrypted:
            raise DeliveryFailed(
                f"room {room_id} is end-to-end encrypted; encrypted rooms are not supported yet"
            )
        if data is None:
            content = self._content(message)
        else:
            content = await self._file_content(client, message, data)
        if self._last_txn is None or self._last_txn[0] is not message:
            self._last_txn = (message, uuid.uuid4().hex)  # a retry reuses it: the server keeps one
        txn = self._last_txn[1]
        response = await self._retrying(
            lambda: client.room_send(room_id, "m.room.message", content, tx_id=txn)
        )
        if isinstance(response, nio.RoomSendResponse):
            if message.thread_id:
                remember(self._thread_latest, message.thread_id, response.event_id)
            return
        _raise_for(response, f"sending to {room_id}")

    def _content(self, message: OutgoingMessage) -> dict[str, Any]:
        return message_content(
            message.text,
            msgtype="m.notice" if self.config.notice else "m.text",
            html=render_markdown(message.text) if self.config.markdown else None,
            reply_to=message.reply_to,
            thread_id=message.thread_id,
            thread_latest=self._thread_latest.get(message.thread_id or ""),
            mentioned=self._senders.get(message.reply_to or ""),
        )

    async def _target_room(self, client: Any, message: OutgoingMessage) -> str:
        if message.private_to is not None:
            return await self._dm_room(client, message.private_to)
        channel = message.channel or ""
        if channel.startswith("@"):  # a private message's channel is its sender
            return await self._dm_room(client, channel)
        if channel.startswith("#"):
            if channel not in self._room_ids:
                response = await client.room_resolve_alias(channel)
                if not isinstance(response, nio.RoomResolveAliasResponse):
                    raise DeliveryFailed(f"unknown room alias {channel}: {response}")
                self._room_ids[channel] = response.room_id
            channel = self._room_ids[channel]
        if channel not in client.rooms:
            raise DeliveryFailed(f"the bot is not in room {channel}")
        return channel

    async def _dm_room(self, client: Any, user_id: str) -> str:
        """The room the bot talks with ``user_id`` alone in (created when there is none)."""
        if not user_id.startswith("@") or ":" not in user_id:
            raise DeliveryFailed(f"{user_id!r} is not a Matrix user id")
        candidates = [self._dm_rooms.get(user_id), *self._direct.get(user_id, ())]
        candidates += [r.room_id for r in client.rooms.values() if self._is_private(r) and user_id in r.users]
        for room_id in candidates:
            room = client.rooms.get(room_id) if room_id else None
            if room is not None and user_id in room.users and not room.encrypted:
                return str(room_id)
        profile = await self._retrying(lambda: client.get_profile(user_id))
        if isinstance(profile, nio.ErrorResponse) and (
            profile.status_code == "M_NOT_FOUND" or _http_status(profile) == 404
        ):
            raise DeliveryFailed(f"no user {user_id} on Matrix to talk to privately")
        response = await self._retrying(
            lambda: client.room_create(
                is_direct=True, invite=[user_id], preset=nio.RoomPreset.trusted_private_chat
            )
        )
        if not isinstance(response, nio.RoomCreateResponse):
            _raise_for(response, f"opening a private room with {user_id}")
        room_id = str(response.room_id)
        logger.info("%s: opened private room %s with %s", self.name, room_id, user_id)
        self._dm_rooms[user_id] = room_id
        await self._mark_direct(client, user_id, room_id)
        return room_id

    async def _mark_direct(self, client: Any, user_id: str, room_id: str) -> None:
        """Record the DM in the bot's ``m.direct`` account data (best effort)."""
        if not user_id:
            return
        rooms = self._direct.setdefault(user_id, [])
        if room_id in rooms:
            return
        rooms.append(room_id)
        path = f"/_matrix/client/v3/user/{quote(client.user_id, safe='')}/account_data/m.direct"
        headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
        try:
            reply = await client.send("PUT", path, json.dumps(self._direct), headers)
            if reply.status != 200:
                logger.info("%s: could not update m.direct: HTTP %d", self.name, reply.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.info("%s: could not update m.direct: %r", self.name, exc)

    async def _retrying(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()`` again after each M_LIMIT_EXCEEDED, as long as the server says to wait."""
        while True:
            response = await call()
            if not (isinstance(response, nio.ErrorResponse) and response.status_code == "M_LIMIT_EXCEEDED"):
                return response
            self.rate_limited += 1
            delay = max(0.05, (response.retry_after_ms or 1000) / 1000)
            logger.info("%s: rate-limited by the homeserver; retrying in %.1f s", self.name, delay)
            await asyncio.sleep(delay)


def _bind(function: Callable[..., Awaitable[Any]], *args: Any) -> Callable[[], Awaitable[Any]]:
    return lambda: function(*args)


def _http_status(response: Any) -> int | None:
    status = getattr(getattr(response, "transport_response", None), "status", None)
    return status if isinstance(status, int) else None


def _raise_for(response: Any, doing: str) -> None:
    """DeliveryFailed for a refusal that will not change (4xx), MatrixError otherwise."""
    status = _http_status(response)
    if status is not None and 400 <= status < 500 and status != 401:
        raise DeliveryFailed(f"{doing}: {response}")
    raise MatrixError(f"{doing}: {response}")
