"""The base of every platform adapter process: supervised, sandboxed and paced like a plugin.

An adapter runs in its own process, started by the same supervisor, launcher and sandbox as a
plugin (``rosey status`` shows it with kind ``adapter``), so a platform library that crashes or
hangs takes down nothing but itself: the supervisor restarts it, and the watchdog's liveness
pings (answered on this event loop) catch a hang. It is a :class:`PluginInterface` underneath
for that machinery only: it gets no commands, and its NATS identity may publish only
``rosey.adapters.<name>.>`` and read only ``rosey.chat.<name>.send``.

A platform subclass writes three things::

    class IrcAdapter(ChatAdapter):
        platform_type = "irc"
        max_message_bytes = 400            # how :meth:`split` cuts long replies

        async def run_session(self):        # connect, join, relay until the connection ends
            ...
            self.set_connected(True)        # replies queued while away start flowing
            await self.emit(ChatEventType.MESSAGE, channel=..., user=ChatUser(...), text=...)

        async def deliver(self, message):   # say one piece that fits
            ...

The base reconnects with backoff whenever :meth:`run_session` returns or raises, queues
replies while the platform is away (bounded, see :class:`~bot.rosey.adapters.outbox.Outbox`),
splits long replies and paces them at the platform's rate. Settings are the non-secret keys of
the adapter's ``[adapters.NAME]`` table (``self.settings``); secrets arrive by name through
:meth:`secret`, resolved by the host from ``password_env`` / ``token_file`` and given to this
process alone. Never log them.

Plugin-process side: imports nothing of the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import time
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from bot.rosey.adapters.outbox import Outbox
from bot.rosey.core.chat import ChatEventType, ChatUser, FileRef, OutgoingMessage, clean_text, split_text
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects, validate_plugin_name
from bot.rosey.errors import DeliveryFailed, MalformedEvent, RoseyError
from bot.rosey.plugins.contract import Env
from bot.rosey.plugins.files_client import fetch_file, release_file
from bot.rosey.plugins.plugin_interface import PluginInterface

__all__ = ["ChatAdapter", "adapter_settings"]

logger = logging.getLogger(__name__)

#: A session that lasted this long was healthy: the next reconnect starts the backoff afresh.
HEALTHY_SESSION_SECONDS = 60.0


def adapter_settings(environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Settings and secrets the host passed (and, from ``os.environ``, remove them: plugin code
    the adapter loads later, and its children, have no business reading them)."""
    if environ is None:
        raw_settings = os.environ.pop(Env.ADAPTER_SETTINGS, None)
        raw_secrets = os.environ.pop(Env.ADAPTER_SECRETS, None)
    else:
        raw_settings, raw_secrets = environ.get(Env.ADAPTER_SETTINGS), environ.get(Env.ADAPTER_SECRETS)
    settings = json.loads(raw_settings or "{}")
    secrets = json.loads(raw_secrets or "{}")
    if not isinstance(settings, dict) or not isinstance(secrets, dict):
        raise ValueError("adapter settings and secrets must be JSON objects")
    return settings, {str(k): str(v) for k, v in secrets.items()}


class ChatAdapter(PluginInterface):
    """One platform connection; subclass it per platform (see the module docstring)."""

    #: The platform's kind, as in ``type = "irc"``.
    platform_type: ClassVar[str] = ""
    #: What one outgoing message may hold (UTF-8 bytes, characters); None for no limit.
    max_message_bytes: ClassVar[int | None] = None
    max_message_chars: ClassVar[int | None] = None
    #: Whether one message may hold several lines (Matrix) or each line is its own (IRC, CyTube).
    keeps_newlines: ClassVar[bool] = False
    #: Outbound pace: ``burst`` messages at once, then ``rate`` per second (settings override).
    default_rate: ClassVar[float] = 1.0
    default_burst: ClassVar[int] = 5
    #: Reconnect backoff: first delay, and the longest (settings ``reconnect_min`` / ``reconnect_max``).
    reconnect_min: ClassVar[float] = 1.0
    reconnect_max: ClassVar[float] = 60.0
    #: files (6d): whether :meth:`deliver_file` uploads files; if not, the chat gets a line saying so.
    supports_files: ClassVar[bool] = False

    def __init__(
        self,
        *,
        name: str | None = None,
        settings: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        nats_url: str | None = None,
        nats_token: str | None = None,
    ) -> None:
        super().__init__(nats_url=nats_url, nats_token=nats_token)
        if settings is None or secrets is None:
            from_env, secrets_from_env = adapter_settings()
            settings = from_env if settings is None else settings
            secrets = secrets_from_env if secrets is None else secrets
        self._name = validate_plugin_name(name or os.getenv(Env.PLUGIN_NAME) or self.platform_type)
        self.settings: dict[str, Any] = dict(settings)
        self._secrets: dict[str, str] = dict(secrets)
        self.state_dir = Path(state_dir or os.getenv(Env.DATA_DIR) or ".")
        self.outbox = Outbox(
            self._deliver_checked,
            rate=float(self.settings.get("rate", self.default_rate)),
            burst=int(self.settings.get("burst", self.default_burst)),
            max_queued=int(self.settings.get("max_queued", 1000)),
            max_age=float(self.settings.get("max_queue_age", 300.0)),
            name=self._name,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.sessions = 0  # sessions started (1 + reconnects)
        self._file_held: dict[str, bytes] = {}  # files (6d): bytes fetched, kept for a retry
        self._releases: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ what a platform writes

    @abstractmethod
    async def run_session(self) -> None:
        """Connect to the platform and relay until the connection ends (return or raise)."""

    @abstractmethod
    async def deliver(self, message: OutgoingMessage) -> None:
        """Say one piece on the platform (it already fits the limits). Raise
        :class:`~bot.rosey.adapters.outbox.DeliveryFailed` for a message that can never be sent."""

    async def deliver_file(self, message: OutgoingMessage, data: bytes) -> None:
        """Upload ``data`` (the file ``message.file`` names) with ``message.text`` as its caption,
        where ``message`` says (only called when ``supports_files``). Raise
        :class:`~bot.rosey.adapters.outbox.DeliveryFailed` if it can never be sent."""
        raise DeliveryFailed(f"{type(self).__name__} cannot upload files")

    async def close_session(self) -> None:
        """Disconnect from the platform (on stop); :meth:`run_session` should then return."""

    def reconnect_delay(self, attempt: int) -> float:
        """Seconds before reconnect number ``attempt`` (1, 2, ...): exponential, with jitter."""
        low = float(self.settings.get("reconnect_min", self.reconnect_min))
        high = float(self.settings.get("reconnect_max", self.reconnect_max))
        delay = min(high, low * 2 ** (attempt - 1))
        return float(delay * random.uniform(0.8, 1.0))

    def split(self, message: OutgoingMessage) -> list[OutgoingMessage]:
        """The pieces ``message`` is sent as (each fitting the platform's limits)."""
        pieces = split_text(
            message.text,
            max_bytes=self.max_message_bytes,
            max_chars=self.max_message_chars,
            newlines=self.keeps_newlines,
        )
        return [_with_text(message, piece) for piece in pieces]

    # ------------------------------------------------------------------ what a platform calls

    @property
    def plugin_name(self) -> str:
        return self._name

    @property
    def name(self) -> str:
        return self._name

    def secret(self, key: str) -> str | None:
        """A credential the operator configured for this adapter (``"password"``, ``"token"``)."""
        return self._secrets.get(key)

    def set_connected(self, connected: bool) -> None:
        """Say whether the platform session can take messages now (joined, logged in)."""
        if connected:
            self.outbox.connected.set()
        else:
            self.outbox.connected.clear()

    async def emit(
        self,
        event_type: ChatEventType,
        *,
        channel: str,
        user: ChatUser,
        text: str = "",
        message_id: str | None = None,
        thread_id: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        """Publish what happened on the platform (never the bot's own messages: filter them first)."""
        data = {
            "channel": channel,
            "user": user.to_wire(),
            "text": clean_text(text),
            "message_id": message_id,
            "thread_id": thread_id,
            "reply_to": reply_to,
        }
        await self._bus().publish(
            Subjects.adapter_event(self._name, ChatEventType(event_type).value),
            data,
            source=f"adapter-{self._name}",
        )

    # ------------------------------------------------------------------ process machinery

    async def handle_command(self, event: Event) -> None:  # never subscribed: adapters take no commands
        return None

    async def connect(self) -> None:
        """Connect as this adapter's identity; read only its own send subject and its pings."""
        name = self._name
        self.event_bus = EventBus(
            servers=[self.nats_url],
            token=self.nats_token,
            name=f"adapter-{name}",
            user=self.nats_user,
            password=self.nats_password,
            inbox_prefix=f"_INBOX.{self.nats_user}" if self.nats_user else None,
        )
        await self.event_bus.connect()
        await self.event_bus.subscribe(Subjects.chat_send(name), self._on_send)
        await self.event_bus.subscribe(Subjects.control(name, "ping"), self._answer_ping)
        await self.event_bus.flush()

    async def publish_event(self, event_name: str, data: dict[str, Any]) -> None:
        """Lifecycle events of an adapter go under its own ``rosey.adapters.<name>.<event>``."""
        subject = f"{Subjects.ADAPTERS}.{self._name}.{event_name}"
        await self._bus().publish(subject, data, source=f"adapter-{self._name}")

    async def on_start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.outbox.run(), name=f"{self._name}-outbox"),
            asyncio.create_task(self._sessions(), name=f"{self._name}-sessions"),
        ]

    async def on_stop(self) -> None:
        self._stopping = True
        self.set_connected(False)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.close_session(), 5.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sessions(self) -> None:
        attempt = 0
        while not self._stopping:
            started = time.monotonic()
            self.sessions += 1
            try:
                await self.run_session()
                why = "the connection ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
            finally:
                self.set_connected(False)
            if self._stopping:
                return
            attempt = 1 if time.monotonic() - started > HEALTHY_SESSION_SECONDS else attempt + 1
            delay = self.reconnect_delay(attempt)
            logger.warning("%s: disconnected (%s); reconnecting in %.1f s", self._name, why, delay)
            await asyncio.sleep(delay)

    async def _on_send(self, event: Event) -> None:
        try:
            message = OutgoingMessage.from_wire(event.data)
        except MalformedEvent as exc:
            logger.warning("%s: ignored an unreadable outgoing message: %s", self._name, exc)
            return
        if message.file is not None and self.supports_files:
            self.outbox.put(message)  # one upload, paced and held like a reply
            return
        if message.file is not None:  # files (6d): say it instead, and let the service forget it
            ref = message.file
            lines = [message.text] if message.text and message.text != ref.name else []
            lines.append(f"this platform cannot receive files: {ref.describe()}")
            message = _with_text(message, "\n".join(lines))
            self._release_later(ref)
        for piece in self.split(message):
            self.outbox.put(piece)

    async def _deliver_checked(self, message: OutgoingMessage) -> None:
        if message.file is None:
            await self.deliver(message)
        else:
            await self._deliver_with_file(message)

    # ------------------------------------------------------------------ files (6d)

    async def _deliver_with_file(self, message: OutgoingMessage) -> None:
        """Fetch the file's bytes from the files service (once: kept for a retry), upload them."""
        ref = message.file
        assert ref is not None
        data = self._file_held.get(ref.id)
        if data is None:
            try:
                data = await fetch_file(self._bus(), self._name, ref)
            except RoseyError as exc:
                logger.warning("%s: file %s not fetched: %s", self._name, ref.id, exc)
                notice = _with_text(message, f"⚠️ the file {ref.describe()} could not be sent: {exc}")
                for piece in self.split(notice)[:1]:
                    await self.deliver(piece)
                return
            self._file_held = {ref.id: data}  # one at a time: the outbox sends one at a time
        pieces = self.split(_with_text(message, message.text))
        caption = pieces[0].text if pieces else ""
        try:
            await self.deliver_file(dataclasses.replace(message, text=caption), data)
        except DeliveryFailed:
            self._file_held.pop(ref.id, None)
            self._release_later(ref)
            raise
        self._file_held.pop(ref.id, None)
        self._release_later(ref)

    def _release_later(self, ref: FileRef) -> None:
        async def release() -> None:
            with contextlib.suppress(Exception):  # it expires anyway
                await release_file(self._bus(), self._name, ref)

        task = asyncio.create_task(release())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)


def _with_text(message: OutgoingMessage, text: str) -> OutgoingMessage:
    return OutgoingMessage(
        text=text,
        channel=message.channel,
        private_to=message.private_to,
        reply_to=message.reply_to,
        thread_id=message.thread_id,
        in_reply_to=message.in_reply_to,
        kind=message.kind,
    )
