"""
Plugin interface base class
All plugins inherit from PluginInterface

This is the only module a plugin needs (plus ``bot.rosey.core.events`` for the ``Event`` type).
It keeps the published plugin API and lifecycle, implemented so that readiness is signalled,
not slept on; shutdown is immediate on SIGTERM; commands run concurrently (bounded by
``max_concurrency``); a command that arrived as a NATS request gets its result as the reply too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from bot.rosey.core.chat import FileRef
from bot.rosey.core.event_bus import DEFAULT_NATS_URL, EventBus, Subscription
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects, validate_plugin_name
from bot.rosey.errors import PayloadTooLarge, PluginNameMismatch, PluginNotConnected
from bot.rosey.plugins.barrier import barrier_reply, barrier_subject  # s-inflight
from bot.rosey.plugins.command_stats import CommandStats
from bot.rosey.plugins.commands import Args, Command, CommandTable, command, prefix_of, route_command
from bot.rosey.plugins.contract import (
    Env,
    ExitCode,
    PingReply,
    current_launch,
    mark_plugin_started,
    notify_on_start,
    notify_ready,
)
from bot.rosey.plugins.files_client import FilesClient
from bot.rosey.plugins.hints import HINT_EVENT, Hint
from bot.rosey.plugins.http_client import HttpClient
from bot.rosey.plugins.ledger import LedgerWriter
from bot.rosey.plugins.loop_watch import LoopWatch
from bot.rosey.plugins.permissions import Requests  # requested vs granted permissions (issue 15)
from bot.rosey.plugins.storage_client import StorageClient
from bot.rosey.plugins.tracebacks import format_plugin_exception

__all__ = ["Args", "Command", "PluginInterface", "command", "run_plugin"]

logger = logging.getLogger(__name__)

_MAX_PENDING_REPLIES = 10_000


class PluginInterface(ABC):
    """
    Base class for all Rosey plugins

    Plugins run in separate processes and communicate via NATS.

    Minimal example:

        class MyPlugin(PluginInterface):
            @property
            def plugin_name(self) -> str:
                return "myplugin"

            async def handle_command(self, event: Event):
                command_data = event.data
                result = {"message": "Command executed!"}
                await self.publish_result(result, event.correlation_id)

    Full lifecycle:
        1. Plugin process starts
        2. __init__ called (setup state)
        3. connect() called (connect to NATS)
        4. on_start() called (plugin initialization)
        5. run() called (event loop, blocking until SIGTERM/SIGINT or stop())
        6. on_stop() called on shutdown
        7. disconnect() called

    Concurrency: up to ``max_concurrency`` commands are handled at once (default 100); set it
    to 1 on your class for strictly serial handling. The operator's ``max_concurrency`` in
    rosey.toml can only lower it.
    """

    #: How many commands may run at once in this plugin; 1 means one after another.
    max_concurrency: int = 100

    #: Declared commands (issue 15, see :mod:`bot.rosey.plugins.commands`): ``{"roll":
    #: Command(usage="[NdS...]", help="Roll dice")}`` or a tuple of ``Command("roll", ...)``; their
    #: arguments are checked before the plugin sees them, and ``!help`` lists them. Optional.
    commands: ClassVar[Mapping[str, Command] | Sequence[Command]] = ()
    #: What this plugin asks the operator to grant (paths, HTTP hosts, quotas, events), written
    #: literally: ``requests = Requests(...)``. It grants nothing by itself; the host reads it
    #: from source and reports what rosey.toml did not grant (see ``plugins/permissions.py``).
    requests: ClassVar[Requests | None] = None
    #: issue 16: True when running one of this plugin's commands twice does no harm. With
    #: ``replicas`` > 1, the commands a dying replica held are then re-sent once to a surviving
    #: replica instead of answered with the crash.
    idempotent: ClassVar[bool] = False

    def __init__(self, nats_url: str | None = None, nats_token: str | None = None):
        """
        Initialize plugin

        Args:
            nats_url: NATS server URL (default: $NATS_URL, then nats://localhost:4222)
            nats_token: NATS auth token (default: $NATS_TOKEN)
        """
        self.nats_url: str = nats_url or os.getenv(Env.NATS_URL) or DEFAULT_NATS_URL
        self.nats_token = nats_token or os.getenv(Env.NATS_TOKEN) or None
        # Per-plugin identity on a server with authorization (set by the runner).
        self.nats_user = os.getenv(Env.NATS_USER) or None
        self.nats_password = os.getenv(Env.NATS_PASSWORD) or None

        self.event_bus: EventBus | None = None
        self._running = False
        self._stop_requested: asyncio.Event | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        # correlation id -> reply inbox of commands not answered yet. Kept after handle_command
        # returns (a plugin may answer later, from another task) but bounded: oldest go first.
        self._reply_to: OrderedDict[str, str] = OrderedDict()
        self.command_stats = CommandStats()
        self._started = False
        self._start_finished = asyncio.Event()
        self._command_table: CommandTable | None = None  # declared commands, read in connect()
        # Says where a command blocks the event loop for over a second (bot.rosey.plugins.loop_watch).
        self._loop_watch = LoopWatch(_code_dir(type(self)), on_hint=self._publish_hint)
        # issue 16: a replica's command ledger (a no-op for a plugin's only process).
        self._ledger = LedgerWriter.from_environment()
        self._command_subscription: Subscription | None = None

    # ========== Abstract Methods (Plugin Author Implements) ==========

    @property
    @abstractmethod
    def plugin_name(self) -> str:
        """
        Plugin identifier (used in NATS subjects)

        Must be lowercase, alphanumeric + underscores only.
        Examples: 'trivia', 'markov', 'calendar_manager'
        """

    async def handle_command(self, event: Event) -> None:
        """
        Handle command execution

        Called when command arrives on: rosey.commands.{plugin_name}.execute

        ``event.data`` holds ``args`` (list of str), ``user`` and ``channel`` when the command
        came from chat. Call ``self.publish_result()`` with the response, or
        ``self.publish_error()``; an exception raised here is published as an error for you.

        Every plugin that declares no commands implements it. One whose commands are all
        ``@command`` methods may leave it out: then a command that matches none of them is
        answered with the plugin's usage line.
        """
        table = self._command_table
        text = (
            table.usage(prefix_of(event)) if table and table.commands else f"{self.plugin_name}: no commands"
        )
        await self.publish_result({"message": text}, event.correlation_id)

    # ========== Optional Lifecycle Hooks ==========

    async def on_start(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Called after the NATS connection is established, before the plugin reports ready."""

    async def on_stop(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Called before shutdown, after in-flight commands finished (or were given up on)."""

    async def on_event(self, event: Event) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Called for any non-command event the plugin subscribed to with subscribe_to_events()."""

    # ========== NATS Connection Management ==========

    async def connect(self) -> None:
        """
        Connect to NATS event bus

        Called automatically by run(). Plugin authors don't need to call this.
        """
        name = validate_plugin_name(self.plugin_name)
        # Declared commands are checked before anything connects: a malformed one stops the start
        # with a message naming it (CommandDeclarationError), not the first user who types it.
        self._command_table = CommandTable.of(type(self), name)
        if not self._command_table.commands and type(self).handle_command is PluginInterface.handle_command:
            # What the seed's abstract method said: a plugin with no way to answer is a mistake.
            raise TypeError(f"{type(self).__name__} implements no handle_command and declares no @command")
        expected = os.getenv(Env.PLUGIN_NAME)
        if expected and expected != name:
            raise PluginNameMismatch(
                f"this plugin's plugin_name is {name!r} but Rosey started it as {expected!r}; "
                "make them match (the name in rosey.toml, or the file's plugin_name)",
                plugin=expected,
                declared=name,
            )
        logger.debug("Plugin '%s' connecting to NATS", name)
        self.event_bus = EventBus(
            servers=[self.nats_url],
            token=self.nats_token,
            name=f"plugin-{name}",
            user=self.nats_user,
            password=self.nats_password,
            inbox_prefix=f"_INBOX.{self.nats_user}" if self.nats_user else None,
        )
        await self.event_bus.connect()

        command_subject = Subjects.plugin_command(name, "execute")
        if not os.getenv(Env.JOIN_AFTER_START):  # issue 16: else run() joins after on_start
            await self._join_command_group()
        if self.idempotent is True:
            self._ledger.idempotent()
        # Answered on the event loop itself: a loop blocked by plugin code stops answering, and
        # the supervisor's liveness check notices.
        await self.event_bus.subscribe(Subjects.control(name, "ping"), self._answer_ping)
        if replica := os.getenv(Env.REPLICA):  # issue 16: this replica's own liveness ping
            await self.event_bus.subscribe(f"{Subjects.control(name, 'ping')}.{replica}", self._answer_ping)
            # s-inflight: the router's barrier after another replica died (plugins/barrier.py).
            await self.event_bus.subscribe(barrier_subject(name, replica), self._answer_barrier)
        await self.event_bus.flush()
        logger.debug("Plugin '%s' connected and subscribed to %s", name, command_subject)

    async def _join_command_group(self) -> None:
        """Take this plugin's commands: one queue group, so its processes (replicas, the old and
        new version of a reload, an overlapping restart) each answer a command once, not twice."""
        name = self.plugin_name
        self._command_subscription = await self._bus().subscribe(
            Subjects.plugin_command(name, "execute"), self._handle_command_wrapper, queue=f"plugin-{name}"
        )

    async def disconnect(self) -> None:
        """Disconnect from NATS"""
        if self.event_bus:
            await self.event_bus.disconnect()
            logger.debug("Plugin '%s' disconnected", self.plugin_name)

    # ========== Command Handling (Internal) ==========

    async def _handle_command_wrapper(self, event: Event) -> None:
        """Start the command in its own task, so a slow command does not hold up the next one."""
        if event.reply and event.correlation_id:
            self._ledger.take(event.correlation_id)  # issue 16: before anything can go wrong
            self._reply_to[event.correlation_id] = event.reply
            if len(self._reply_to) > _MAX_PENDING_REPLIES:
                self._reply_to.popitem(last=False)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._effective_concurrency())
        await self._slots.acquire()  # back-pressure: stop reading commands when all slots are busy
        task = asyncio.create_task(self._run_command(event))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _effective_concurrency(self) -> int:
        """The class's ``max_concurrency``, lowered (never raised) by the operator's config."""
        limit = max(1, int(self.max_concurrency))
        configured = os.getenv(Env.MAX_CONCURRENCY, "")
        if configured.isdigit() and int(configured) > 0:
            limit = min(limit, int(configured))
        return limit

    async def _run_command(self, event: Event) -> None:
        """
        Internal wrapper for command handling

        Adds error handling and logging around plugin's handle_command()
        """
        if not self._started:
            # The subscription exists before on_start() ran (the documented order); a command that
            # arrives that early waits for on_start() instead of meeting a half-built plugin.
            await self._start_finished.wait()
            if not self._started:
                return  # on_start failed: the process is going down
        started = self.command_stats.begin()
        self._loop_watch.command_started()
        failed = False
        try:
            logger.debug("Plugin '%s' received command %s", self.plugin_name, event.correlation_id)
            # Declared commands are checked (and routed) first; anything else: handle_command.
            await route_command(self, self._command_table, event)
        except Exception as e:
            failed = True
            logger.error(
                "Plugin '%s' command error: %s\n%s", self.plugin_name, e, format_plugin_exception(e).rstrip()
            )
            with contextlib.suppress(Exception):
                await self.publish_error(str(e) or type(e).__name__, event.correlation_id)
        finally:
            self._loop_watch.command_finished()
            self.command_stats.end(started, failed=failed)
            if self._slots is not None:
                self._slots.release()

    async def _answer_ping(self, event: Event) -> None:
        if not event.reply or self.event_bus is None:
            return
        stats = self.command_stats.snapshot()
        reply = PingReply(
            commands=stats["commands"],
            errors=stats["errors"],
            in_flight=stats["in_flight"],
            latency_ms_p50=stats["latency_ms_p50"],
            latency_ms_p99=stats["latency_ms_p99"],
            permission_violations=self.event_bus.stats.permission_violations,
            malformed=self.event_bus.stats.malformed,
            # Tasks inherit the context asyncio.run() was called in: the launcher's record is there.
            sandbox=current_launch().sandbox,
        )
        await self.event_bus.respond(
            event,
            Event(
                subject=event.reply,
                data=reply.to_wire(),
                source=f"plugin-{self.plugin_name}",
                event_type="pong",
            ),
        )

    async def _answer_barrier(self, event: Event) -> None:
        """s-inflight (issue 16): which of the router's commands this replica holds."""
        if not event.reply or self.event_bus is None:
            return
        reply = await barrier_reply(event.data, self._ledger, self._command_subscription)
        await self.event_bus.respond(
            event,
            Event(
                subject=event.reply,
                data=dict(reply),
                source=f"plugin-{self.plugin_name}",
                event_type="barrier",
            ),
        )

    # ========== Publishing Methods (For Plugin Authors) ==========

    async def publish_result(
        self,
        data: dict[str, Any],
        correlation_id: str | None = None,
        response_channel: dict[str, Any] | None = None,
    ) -> None:
        """
        Publish command result

        Publishes to: rosey.commands.{plugin_name}.result (and answers the request, if the
        command was sent as one).

        Args:
            data: Result data (must contain 'message' or 'text' for chat response)
            correlation_id: Links response to request
            response_channel: Override response destination
        """
        payload = {**data, "correlation_id": correlation_id}
        if response_channel:
            payload["response_channel"] = response_channel
        await self._publish_answer("result", payload, correlation_id)

    async def publish_error(self, error_message: str, correlation_id: str | None = None) -> None:
        """
        Publish error

        Publishes to: rosey.commands.{plugin_name}.error

        Args:
            error_message: Error description
            correlation_id: Links to original request
        """
        await self._publish_answer("error", {"error": error_message}, correlation_id)
        logger.warning("Plugin '%s' published error: %s", self.plugin_name, error_message)

    async def _publish_answer(self, action: str, payload: dict[str, Any], correlation_id: str | None) -> None:
        bus = self._bus()
        event = Event(
            subject=Subjects.plugin_command(self.plugin_name, action),
            data=payload,
            source=f"plugin-{self.plugin_name}",
            correlation_id=correlation_id,
        )
        reply = self._reply_to.pop(correlation_id, None) if correlation_id else None
        subjects = (event.subject, reply) if reply else (event.subject,)
        if reply:
            self._ledger.done(correlation_id)  # issue 16
        try:
            # The documented .result subject for observers, and the requester's inbox: one encoding
            # for both.
            await bus.publish_event_to(event, subjects)
        except PayloadTooLarge as exc:
            # Refused before anything was sent. The requester still waits on its inbox: tell it
            # why now, rather than let it time out.
            what = "result" if action == "result" else "error message"
            text = f"{what} too large: {exc.sizes()}"
            logger.error("Plugin '%s' %s", self.plugin_name, text)
            error = Event(
                subject=Subjects.plugin_command(self.plugin_name, "error"),
                data={"error": text},
                source=f"plugin-{self.plugin_name}",
                correlation_id=correlation_id,
            )
            await bus.publish_event_to(error, (error.subject, reply) if reply else (error.subject,))

    async def publish_event(self, event_name: str, data: dict[str, Any]) -> None:
        """
        Publish plugin-specific event

        Publishes to: rosey.plugins.{plugin_name}.{event_name}
        """
        await self._bus().publish(
            Subjects.plugin_event(self.plugin_name, event_name),
            data=data,
            source=f"plugin-{self.plugin_name}",
        )

    # ========== Plugin Services ==========

    @functools.cached_property
    def storage(self) -> StorageClient:
        """This plugin's own key-value storage, kept by Rosey across restarts (see
        :mod:`bot.rosey.plugins.storage_client`): ``await self.storage.get(key, default)``,
        ``put(key, value, ttl=None)``, ``delete(key)``, ``keys(prefix)``, ``update(key, fn)``."""
        return StorageClient(self._bus, self.plugin_name)

    # ========== Subscription Helpers ==========

    async def subscribe_to_events(self, event_types: list[str] | None = None) -> None:
        """
        Subscribe to normalized events

        Args:
            event_types: Specific event types (e.g., ['message', 'user_join'])
                        If None, subscribes to all events

        Events will be delivered to self.on_event()
        """
        bus = self._bus()
        subjects = [Subjects.event(t) for t in event_types] if event_types else [Subjects.EVENTS_ALL]
        for subject in subjects:
            await bus.subscribe(subject, self.on_event)
            logger.debug("Plugin '%s' subscribed to %s", self.plugin_name, subject)
        await bus.flush()

    # ========== Plugin Services ==========

    @functools.cached_property
    def http(self) -> HttpClient:
        """HTTP through the host's gateway, as the operator's ``[plugins.NAME.http]`` grant allows."""
        return HttpClient(self._bus, self.plugin_name)

    async def send_file(
        self,
        filename: str,
        data: bytes,
        mime_type: str | None = None,
        correlation_id: str | None = None,
        caption: str | None = None,
    ) -> FileRef:
        """Answer command ``correlation_id`` with a file (see :mod:`bot.rosey.plugins.files_client`).

        ``data`` (bytes) is uploaded to the host, which names and keeps the file briefly; the chat
        the command came from gets it as an upload where the platform takes files (``caption``,
        or the name, as its text), else a line saying it cannot. Raises
        :class:`~bot.rosey.errors.FileTooLarge` (``size``, ``limit``) past the plugin's
        ``[plugins.NAME.files] max_bytes`` (default 8 MiB) before uploading anything.
        """
        files = FilesClient(self._bus, self.plugin_name)
        return await files.send(
            filename,
            data,
            answer=self.publish_result,
            mime_type=mime_type,
            correlation_id=correlation_id,
            caption=caption,
        )

    def _publish_hint(self, hint: Hint) -> None:
        """A hint (already in the log) on ``rosey.plugins.<name>.hint`` too, for whoever shows them."""
        if self.event_bus is None or not self.event_bus.is_connected:
            return
        task = asyncio.ensure_future(self.publish_event(HINT_EVENT, hint.to_wire()))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())  # never unretrieved

    def _bus(self) -> EventBus:
        if self.event_bus is None:
            raise PluginNotConnected(
                f"plugin '{self.plugin_name}' is not connected; run() connects it", plugin=self.plugin_name
            )
        return self.event_bus

    # ========== Main Run Loop ==========

    async def run(self) -> None:
        """
        Main plugin loop (blocking)

        Called by plugin runner. Handles full lifecycle:
        1. Connect to NATS
        2. Call on_start()
        3. Report ready and keep serving until stop() or SIGTERM/SIGINT
        4. Call on_stop()
        5. Disconnect

        A failure in connect() or on_start() is re-raised, so the process exits non-zero and
        its runner reports the error instead of a silent exit.
        """
        self._stop_requested = asyncio.Event()
        self._install_signal_handlers()
        self._loop_watch.start()
        self._started = False
        try:
            await self.connect()
            notify_on_start()  # a start that times out from here on is named after on_start
            try:
                await self.on_start()
                self._started = True
            finally:
                self._start_finished.set()
            if self._command_subscription is None:  # issue 16: Env.JOIN_AFTER_START
                await self._join_command_group()
                await self._bus().flush()
            await self.publish_event(
                "started", {"plugin_name": self.plugin_name, "timestamp": asyncio.get_running_loop().time()}
            )
            self._running = True
            notify_ready()
            logger.info("Plugin '%s' running (pid %d)", self.plugin_name, os.getpid())
            await self._stop_requested.wait()
        except KeyboardInterrupt:
            logger.info("Plugin '%s' received interrupt", self.plugin_name)
        except Exception as e:
            # Once, with the plugin's own frames; run_plugin() adds nothing but the exit code.
            logger.error(
                "Plugin '%s' fatal error:\n%s", self.plugin_name, format_plugin_exception(e).rstrip()
            )
            if self.event_bus is not None and self.event_bus.is_connected:
                with contextlib.suppress(Exception):
                    await self.publish_event("error", {"error": str(e)})
            raise
        finally:
            self._running = False
            self._loop_watch.stop()
            await self._shutdown()

    async def _shutdown(self, grace: float = 3.0) -> None:
        logger.debug("Plugin '%s' stopping", self.plugin_name)
        # issue 16: leave the queue group first and take what NATS already sent (a drain), so the
        # other processes of the group (a replica, the new version of a reload) get every later
        # command and none is lost in between.
        subscription, self._command_subscription = self._command_subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(subscription.drain(), grace)
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
        try:
            if self._started:  # on_stop undoes on_start; after a failed start it would mask the error
                await self.on_stop()
        except Exception as e:
            logger.error("Plugin '%s' on_stop failed: %s", self.plugin_name, e, exc_info=True)
        finally:
            if self.event_bus is not None and self.event_bus.is_connected:
                with contextlib.suppress(Exception):
                    await self.publish_event("stopped", {"plugin_name": self.plugin_name})
            await self.disconnect()

    def stop(self) -> None:
        """
        Stop plugin

        Called externally (e.g., by plugin manager) to trigger shutdown
        """
        logger.debug("Plugin '%s' stop requested", self.plugin_name)
        self._running = False
        if self._stop_requested is not None:
            self._stop_requested.set()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)


def _code_dir(plugin_class: type) -> str | None:
    """The directory of the file that defines the plugin's ``handle_command`` (its own code lives
    there). Read from the code object: a plugin file run as ``__main__`` has no module to ask."""
    code = getattr(getattr(plugin_class, "handle_command", None), "__code__", None)
    file = getattr(code, "co_filename", None)
    if not isinstance(file, str) or file.startswith("<"):
        return None
    return os.path.dirname(os.path.abspath(file))


# ========== Plugin Entry Point Helper ==========


def run_plugin(plugin_class: type[PluginInterface], **kwargs: Any) -> None:
    """
    Entry point helper for plugin scripts

    Usage in plugin file:
        if __name__ == "__main__":
            run_plugin(MyPlugin)

    Exits 0 after a clean stop and 1 when the plugin fails (the traceback goes to stderr,
    where the runner keeps it for ``rosey logs`` and start-up errors).
    """
    # First, however this ends: the launcher looks at it once the plugin file's main block
    # returns, and must not start the file's plugin class a second time.
    mark_plugin_started()

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=os.getenv(Env.PLUGIN_LOG_LEVEL, "INFO").upper(),
            format=f"%(asctime)s - {plugin_class.__name__} - %(levelname)s - %(message)s",
        )

    plugin = plugin_class(**kwargs)
    try:
        asyncio.run(plugin.run())
    except KeyboardInterrupt:
        logger.info("Plugin %s interrupted", plugin.plugin_name)
        sys.exit(ExitCode.OK)
    except Exception:  # run() has logged it, with its traceback
        sys.exit(ExitCode.PLUGIN_FAILED)
