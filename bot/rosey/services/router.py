"""CoreRouter: the host side of a command, from a chat line to the reply shown in chat.

Flow::

    adapter --rosey.events.message--> router --request rosey.commands.<p>.execute--> plugin
    adapter <--rosey.chat.<platform>.send-- router <--------- reply (result / error) --'

A command is a NATS request, so the router learns at once when nobody serves a plugin (no
responders) and needs no subscription per plugin for answers. What NATS cannot say is that the
process holding a request died: the supervisor publishes ``rosey.lifecycle.<name>.crashed`` and
the router fails every request still in flight to that plugin right away, instead of making
the user wait for the timeout. Every failure on the plugin side becomes a
:class:`CommandOutcome` with a message fit for chat; :meth:`CoreRouter.execute` never raises
for them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shlex
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from bot.rosey.core.chat import ChatEvent, ChatEventType, FileRef, OutgoingMessage
from bot.rosey.core.event_bus import EventBus, Subscription
from bot.rosey.core.events import Event, new_id
from bot.rosey.core.subjects import Subjects, validate_plugin_name
from bot.rosey.errors import (
    BusNotConnected,
    MalformedEvent,
    NoResponders,
    PayloadTooLarge,
    RequestTimeout,
)
from bot.rosey.plugins.declared_commands import HELP_COMMAND
from bot.rosey.services.access import AccessPolicy
from bot.rosey.services.replica_barrier import BarrierScope, BarrierVerdict, ReplicaBarrier  # s-inflight
from bot.rosey.supervision.lifecycle import LifecycleEvent
from bot.rosey.supervision.status import PluginState

__all__ = ["CommandOutcome", "CoreRouter", "OutcomeKind", "RouterConfig"]

logger = logging.getLogger(__name__)

#: Subject the supervisor announces a dead plugin process on (data: a LifecycleEvent). Only the core
#: may publish there, so a plugin cannot fail another's commands by announcing its crash.
CRASHED_SUBJECT = Subjects.lifecycle_events(state=PluginState.CRASHED.value)

_OutcomeFactory = Callable[..., "CommandOutcome"]
#: Answers ``!rosey ...`` for a bot admin: (the chat event, its arguments) -> the reply text.
AdminCommand = Callable[[ChatEvent, list[str]], Awaitable[str]]
#: The command name the core itself answers (bot admins' ``!rosey status``); no plugin gets it.
ADMIN_COMMAND = "rosey"
#: issue 15: answers ``!help [NAME]``: (its arguments, the access check for the asking user,
#: whether they are a bot admin) -> the reply text (see services/chat_help.py).
HelpCommand = Callable[[list[str], Callable[[str], "str | None"], bool], str]
#: files (6d): (plugin, the ``file`` of its answer, the adapter it goes to) -> the stored file, bound
#: to that adapter, or None when the plugin may not send it (see ``FilesService.claim``).
ClaimFile = Callable[[str, object, str], FileRef | None]
#: The source of the chat events the relay republishes (the router has them already, in-process).
RELAY_SOURCE = "rosey-relay"


class OutcomeKind(StrEnum):
    """How a command ended; the value travels in chat replies as ``kind``."""

    RESULT = "result"  # the plugin answered with a result
    ERROR = "error"  # the plugin answered with an error
    TIMEOUT = "timeout"  # the plugin is subscribed but did not answer in time
    UNKNOWN = "unknown"  # no such command
    UNAVAILABLE = "unavailable"  # a known plugin that is not running (or the bus is down)
    CRASHED = "crashed"  # the plugin process died while handling the command
    TOO_LARGE = "too_large"  # the command does not fit in one message on the bus
    REFUSED = "refused"  # this user may not run it here (allow-list, role); said by the router


@dataclass(frozen=True, kw_only=True)
class CommandOutcome:
    """The end of one command: what to say in chat (``message``, never empty) and the details."""

    kind: OutcomeKind
    plugin: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    correlation_id: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.RESULT


@dataclass(frozen=True, kw_only=True)
class RouterConfig:
    """How the router reads commands and how long it waits for plugins.

    ``timeouts`` overrides ``command_timeout`` per plugin. ``max_concurrent`` caps the chat
    commands handled at once, so a flood of commands to a slow plugin cannot pile up tasks
    without bound; commands beyond it are dropped with a warning.
    """

    prefix: str = "!"
    command_timeout: float = 10.0
    timeouts: Mapping[str, float] = field(default_factory=dict)
    max_concurrent: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or not self.prefix or any(c.isspace() for c in self.prefix):
            raise ValueError(f"prefix must be a non-empty string without spaces, got {self.prefix!r}")
        if not self.command_timeout > 0:
            raise ValueError(f"command_timeout must be positive, got {self.command_timeout}")
        for name, value in self.timeouts.items():
            validate_plugin_name(name)
            if not value > 0:
                raise ValueError(f"timeout for plugin {name!r} must be positive, got {value}")
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {self.max_concurrent}")
        # A read-only copy: the caller's dict must not change a frozen config behind its back.
        object.__setattr__(self, "timeouts", MappingProxyType(dict(self.timeouts)))

    def timeout_for(self, plugin: str) -> float:
        return self.timeouts.get(plugin, self.command_timeout)


def _split_args(text: str) -> list[str]:
    """Split like a shell for quoting ("a b" is one argument), but keep chat text intact.

    Backslashes stay literal (``C:\\temp`` is not an escape) and ``#`` starts no comment; an
    unbalanced quote (``don't``) falls back to splitting on whitespace. Note that two
    apostrophes in one line (``it's Bob's``) still pair up as quotes: that is shlex's rule.
    """
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    lexer.escape = ""
    try:
        return list(lexer)
    except ValueError:  # "No closing quotation"
        return text.split()


class CoreRouter:
    """Routes commands to plugins over the bus and chat lines to commands.

    ``known_plugins`` returns the names of configured plugins (running or not): it turns "no
    responders" into UNAVAILABLE for those and lets UNKNOWN list what exists.
    """

    def __init__(
        self,
        bus: EventBus,
        config: RouterConfig | None = None,
        *,
        known_plugins: Callable[[], Collection[str]] | None = None,
        why_unavailable: Callable[[str], str | None] | None = None,
        access: AccessPolicy | None = None,
        admin: AdminCommand | None = None,
        source: str = "rosey-router",
        on_outcome: Callable[[CommandOutcome], None] | None = None,
        files: ClaimFile | None = None,
        help: HelpCommand | None = None,
        bus_for: Callable[[str], EventBus | None] | None = None,  # s-host
        barrier_scope: Callable[[str], BarrierScope] | None = None,
    ) -> None:
        self.bus = bus
        # s-host: a plugin on another host is asked on the hub's connection for that host (the
        # only inbox that host may answer into); None: this bus.
        self._bus_for = bus_for
        self.config = config or RouterConfig()
        self.source = source
        self._known_plugins = known_plugins
        # Why a known plugin serves nothing ("failed to load: plugins/x.py:3: SyntaxError ..."),
        # so the user reads the reason rather than "not running".
        self._why_unavailable = why_unavailable
        self.access = access or AccessPolicy()
        self._admin = admin
        self._on_outcome = on_outcome  # metrics: sees every command's outcome (see execute)
        self._files = files  # files (6d)
        self._help = help  # issue 15: the built-in !help
        self._subscriptions: list[Subscription] = []
        # Per plugin, one future per execute() in flight; a crash event resolves them all.
        self._in_flight: dict[str, set[_Waiter]] = {}
        self._chat_tasks: set[asyncio.Task[None]] = set()
        # s-inflight (issue 16): finds the commands a dead replica was handed but never read.
        # Plugins on hosts: the hub says where their processes are (hosts/hub.py barrier_scope).
        self._barrier = ReplicaBarrier(
            lambda plugin: (self._bus_for(plugin) if self._bus_for is not None else None) or self.bus,
            source=source,
            scope=barrier_scope,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, chat: bool = True) -> None:
        """Listen for crash events and (unless ``chat=False``) chat messages; return once the
        server has the subscriptions. A one-shot caller such as ``rosey send`` passes
        ``chat=False``, or it would answer every chat command a second time."""
        if self._subscriptions:
            return
        self._subscriptions = [await self.bus.subscribe(CRASHED_SUBJECT, self._on_plugin_crashed)]
        if chat:
            for kind in (ChatEventType.MESSAGE, ChatEventType.PRIVATE_MESSAGE):
                self._subscriptions.append(
                    await self.bus.subscribe(Subjects.event(kind), self._on_chat_message)
                )
        await self.bus.flush()

    async def stop(self) -> None:
        """Stop listening and cancel chat commands still running; in-flight execute() calls of
        other callers are left to finish on their own."""
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.unsubscribe()
        await self._barrier.close()  # s-inflight
        tasks = set(self._chat_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ commands

    def parse(self, text: str) -> tuple[str, list[str]] | None:
        """``"!echo hi there"`` -> ``("echo", ["hi", "there"])``; None when ``text`` is no command.

        The command name must follow the prefix directly and start with a letter or digit
        ("! echo", "!!!" are chat, not commands); it is lower-cased, since plugin names are
        lower-case and people type "!Echo". A name that is no valid plugin name still parses,
        so that execute() can answer "unknown command".
        """
        prefix = self.config.prefix
        if not isinstance(text, str):
            return None
        text = text.strip()
        if not text.startswith(prefix):
            return None
        rest = text[len(prefix) :]
        if not rest or not rest[0].isalnum():  # "! hi", "!!!", "!?" are exclamations
            return None
        name, *arg_text = rest.split(maxsplit=1)
        return name.lower(), _split_args(arg_text[0]) if arg_text else []

    async def execute(
        self,
        plugin: str,
        args: list[str],
        *,
        user: str | dict[str, Any] = "console",
        channel: str = "console",
        timeout: float | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> CommandOutcome:
        """Run ``plugin`` with ``args`` and return how it ended; never raises for plugin failures.

        ``context`` adds keys to the command's data (a chat command's ``platform``, ``private``).
        """
        # --- metrics hook: every outcome, once, to ``on_outcome`` (commands by outcome, latency).
        result = await self._execute(
            plugin, args, user=user, channel=channel, timeout=timeout, context=context
        )
        if self._on_outcome is not None:
            try:
                self._on_outcome(result)
            except Exception:  # counting must never cost a user their answer
                logger.exception("on_outcome callback failed")
        return result
        # --- end of the metrics hook

    async def _execute(
        self,
        plugin: str,
        args: list[str],
        *,
        user: str | dict[str, Any],
        channel: str,
        timeout: float | None,
        context: Mapping[str, Any] | None,
    ) -> CommandOutcome:
        started = time.monotonic()
        correlation_id = new_id()

        def outcome(kind: OutcomeKind, message: str, data: dict[str, Any] | None = None) -> CommandOutcome:
            return CommandOutcome(
                kind=kind,
                plugin=plugin,
                message=message,
                data=data or {},
                correlation_id=correlation_id,
                elapsed=time.monotonic() - started,
            )

        try:
            subject = Subjects.plugin_command(plugin, "execute")
        except ValueError:
            logger.debug("command %r is not a valid plugin name", plugin)
            return outcome(OutcomeKind.UNKNOWN, self._unknown_message(plugin))
        if (reason := self._reason(plugin)) is not None:
            # Known not to serve right now (starting, failed, restarting): say so at once rather
            # than make the user wait for the command timeout.
            return outcome(OutcomeKind.UNAVAILABLE, f"plugin '{plugin}' {reason}")
        wait = timeout if timeout is not None else self.config.timeout_for(plugin)
        data = {**(context or {}), "args": list(args), "user": user, "channel": channel}
        logger.debug("command %s %s (cid %s, timeout %gs)", plugin, args, correlation_id, wait)

        # A crash event cancels this very task (no second task, no race: bench/PROFILE.md
        # measured -42 µs p50); the mark tells that cancel from one by our own caller.
        waiter = _Waiter(asyncio.current_task(), correlation_id)
        self._in_flight.setdefault(plugin, set()).add(waiter)
        crashed: str | None = None
        try:
            while True:
                try:
                    bus = (self._bus_for(plugin) if self._bus_for is not None else None) or self.bus  # s-host
                    reply = await bus.request(subject, data, self.source, correlation_id, timeout=wait)
                    break
                except asyncio.CancelledError:
                    if waiter.crash_reason is None or (
                        waiter.task is not None and waiter.task.uncancel() > 0
                    ):
                        raise  # cancelled by our caller, not (only) by the crash
                    if not waiter.resend:
                        crashed = waiter.crash_reason
                        break
                    # --- issue 16: its replica died holding it, and the plugin says its commands
                    # are idempotent: once more, to the replicas left in the queue group.
                    logger.info(
                        "plugin %s: replica died during command %s; sent again",
                        plugin,
                        correlation_id,
                        extra={"plugin": plugin, "correlation_id": correlation_id},
                    )
                    waiter.crash_reason, waiter.resend, waiter.resent = None, False, True
            if crashed is not None:
                reason = crashed
                logger.warning(
                    "plugin %s crashed during command %s: %s",
                    plugin,
                    correlation_id,
                    reason,
                    extra={"plugin": plugin, "correlation_id": correlation_id},
                )
                return outcome(
                    OutcomeKind.CRASHED,
                    f"plugin '{plugin}' crashed while handling your command ({reason})",
                    {"reason": reason},
                )
        except NoResponders:
            return self._no_responders(plugin, outcome)
        except RequestTimeout:
            logger.warning(
                "plugin %s did not answer command %s within %gs",
                plugin,
                correlation_id,
                wait,
                extra={"plugin": plugin, "correlation_id": correlation_id},
            )
            return outcome(OutcomeKind.TIMEOUT, f"plugin '{plugin}' did not answer within {wait:g} s")
        except PayloadTooLarge as exc:
            return outcome(
                OutcomeKind.TOO_LARGE,
                f"command too large: {exc.sizes()} (the message limit)",
            )
        except BusNotConnected as exc:
            logger.warning(
                "command %s for %s not sent: %s",
                correlation_id,
                plugin,
                exc,
                extra={"plugin": plugin, "correlation_id": correlation_id},
            )
            return outcome(
                OutcomeKind.UNAVAILABLE, "commands are unavailable right now: the bot lost its message bus"
            )
        except MalformedEvent as exc:
            logger.warning(
                "plugin %s sent a malformed reply to %s: %s",
                plugin,
                correlation_id,
                exc,
                extra={"plugin": plugin, "correlation_id": correlation_id},
            )
            return outcome(OutcomeKind.ERROR, f"⚠️ {plugin}: the plugin sent an unreadable answer")
        finally:
            waiting = self._in_flight.get(plugin)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._in_flight[plugin]
        return self._answered(plugin, reply, outcome)

    def _answered(self, plugin: str, reply: Event, outcome: _OutcomeFactory) -> CommandOutcome:
        # The reply travels on the requester's inbox, so its subject says nothing: the envelope's
        # type (from the plugin's rosey.commands.<p>.result / .error subject) tells them apart.
        if reply.event_type == "error" or (reply.event_type != "result" and "error" in reply.data):
            text = str(reply.data.get("error") or "unknown error")
            logger.warning(
                "plugin %s answered %s with an error: %s",
                plugin,
                reply.correlation_id,
                text,
                extra={"plugin": plugin, "correlation_id": reply.correlation_id},
            )
            return outcome(OutcomeKind.ERROR, f"⚠️ {plugin}: {text}", reply.data)
        message = reply.data.get("message") or reply.data.get("text")
        text = str(message) if message else f"(plugin {plugin} answered without a message)"
        logger.debug("plugin %s answered %s", plugin, reply.correlation_id)
        return outcome(OutcomeKind.RESULT, text, reply.data)

    def _no_responders(self, plugin: str, outcome: _OutcomeFactory) -> CommandOutcome:
        if plugin in self._known():
            logger.warning("plugin %s is configured but nothing serves its commands", plugin)
            reason = self._reason(plugin)
            if reason:
                return outcome(OutcomeKind.UNAVAILABLE, f"plugin '{plugin}' {reason}")
            return outcome(OutcomeKind.UNAVAILABLE, f"plugin '{plugin}' is not running right now")
        logger.debug("no plugin serves command %r", plugin)
        return outcome(OutcomeKind.UNKNOWN, self._unknown_message(plugin))

    def _known(self) -> list[str]:
        if self._known_plugins is None:
            return []
        try:
            return sorted(self._known_plugins())
        except Exception:  # a broken callback must not break every command
            logger.exception("known_plugins callback failed")
            return []

    def _reason(self, plugin: str) -> str | None:
        if self._why_unavailable is None:
            return None
        try:
            return self._why_unavailable(plugin)
        except Exception:  # a broken callback must not break every command
            logger.exception("why_unavailable callback failed")
            return None

    def _unknown_message(self, plugin: str) -> str:
        known = self._known()
        command = f"{self.config.prefix}{plugin}"
        if known:
            return f"unknown command '{command}' — try one of: {', '.join(known)}"
        return f"unknown command '{command}'"

    async def dispatch(
        self, text: str, *, user: str | dict[str, Any] = "console", channel: str = "console"
    ) -> CommandOutcome | None:
        """Parse ``text`` and execute it; None when it is not a command."""
        parsed = self.parse(text)
        if parsed is None:
            return None
        plugin, args = parsed
        return await self.execute(plugin, args, user=user, channel=channel)

    # ------------------------------------------------------------------ bus handlers

    async def _on_chat_message(self, event: Event) -> None:
        """A chat event published on ``rosey.events.*`` (the console, a script with the core's
        identity). Events of adapters come through :meth:`accept` from the relay, in-process, and
        are skipped here: their copy on the bus is for plugins."""
        if event.source == RELAY_SOURCE:
            return
        text = event.data.get("text")
        if not isinstance(text, str) or not text.lstrip().startswith(self.config.prefix):
            return  # chat, not a command: not worth reading the rest
        try:
            chat = ChatEvent.from_wire(
                event.data,
                event_type=event.event_type,
                platform=str(event.data.get("platform")),
                platform_type=str(event.data.get("platform_type") or event.data.get("platform")),
            )
        except MalformedEvent as exc:
            logger.warning("chat event %s is unreadable (%s); ignored", event.id, exc)
            return
        self.accept(chat, event.id)

    def accept(self, chat: ChatEvent, event_id: str) -> None:
        """Answer ``chat`` if it is a command (in a task of its own); ``event_id`` is what the
        reply's ``in_reply_to`` names."""
        command = self.parse(chat.text)
        if command is None:
            return  # chat, not a command
        try:
            reply_subject = Subjects.chat_send(chat.platform)
        except ValueError:
            logger.warning("chat message %s has no usable platform (%r); ignored", event_id, chat.platform)
            return
        if len(self._chat_tasks) >= self.config.max_concurrent:
            logger.warning("%d chat commands running already; dropped %s", len(self._chat_tasks), event_id)
            return
        # One task per command: the bus delivers messages one at a time, and a slow plugin must
        # not hold up everybody else's commands.
        task = asyncio.create_task(self._answer_chat(chat, event_id, command, reply_subject))
        self._chat_tasks.add(task)
        task.add_done_callback(self._chat_tasks.discard)

    async def _answer_chat(
        self, chat: ChatEvent, event_id: str, command: tuple[str, list[str]], reply_subject: str
    ) -> None:
        plugin, args = command  # parsed once, by accept()
        correlation_id = new_id()
        data: dict[str, Any] = {}
        started = time.monotonic()
        if plugin == ADMIN_COMMAND and self._admin is not None:
            kind, text = await self._run_admin(chat, args)
            self._count_builtin(kind, plugin, text, correlation_id, started)
        elif plugin == HELP_COMMAND and self._help is not None:
            kind, text = self._run_help(chat, args)
            self._count_builtin(kind, plugin, text, correlation_id, started)
        elif (refusal := self.access.refusal(plugin, chat, self.config.prefix)) is not None:
            kind, text = OutcomeKind.REFUSED, refusal
            self._count_builtin(kind, plugin, text, correlation_id, started)
        else:
            # The prefix lets the SDK write usage lines as this chat types them (issue 15).
            context = {"platform": chat.platform, "private": chat.private, "prefix": self.config.prefix}
            if chat.thread_id:
                context["thread_id"] = chat.thread_id
            outcome = await self.execute(
                plugin, args, user=chat.user.to_wire(), channel=chat.channel, context=context
            )
            kind, text, data, correlation_id = (
                outcome.kind,
                outcome.message,
                outcome.data,
                outcome.correlation_id,
            )
        reply, subject = _reply_for(chat, text, data.get("response_channel"), reply_subject)
        if kind is OutcomeKind.RESULT and data.get("file") is not None:  # files (6d)
            reply = self._with_file(plugin, reply, data["file"], subject)
        wire = {**reply.to_wire(), "in_reply_to": event_id, "kind": kind.value}
        try:
            await self.bus.publish(subject, wire, self.source, correlation_id)
        except BusNotConnected as exc:
            logger.warning("reply to %s lost: %s", event_id, exc)

    def _count_builtin(
        self, kind: OutcomeKind, plugin: str, text: str, correlation_id: str, started: float
    ) -> None:
        """Metrics see what the router answered itself too: ``!rosey``, ``!help`` and refusals."""
        if self._on_outcome is None:
            return
        outcome = CommandOutcome(
            kind=kind,
            plugin=plugin,
            message=text,
            correlation_id=correlation_id,
            elapsed=time.monotonic() - started,
        )
        try:
            self._on_outcome(outcome)
        except Exception:  # counting must never cost a user their answer
            logger.exception("on_outcome callback failed")

    def _with_file(self, plugin: str, reply: OutgoingMessage, raw: object, subject: str) -> OutgoingMessage:
        """files (6d): the reply carrying the file the plugin sent, claimed for the adapter it goes to."""
        ref = self._files(plugin, raw, subject.split(".")[2]) if self._files is not None else None
        if ref is None:
            text = f"⚠️ {plugin}: the file it sent cannot be delivered (unknown, expired or already sent)"
            return dataclasses.replace(reply, text=text)
        return dataclasses.replace(reply, file=ref)

    async def _run_admin(self, chat: ChatEvent, args: list[str]) -> tuple[OutcomeKind, str]:
        if not self.access.is_admin(chat):
            logger.warning(
                "%s:%s is no admin; refused %s%s",
                chat.platform,
                chat.user.id,
                self.config.prefix,
                ADMIN_COMMAND,
            )
            return OutcomeKind.REFUSED, f"{self.config.prefix}{ADMIN_COMMAND} is for the bot's admins only"
        assert self._admin is not None
        try:
            return OutcomeKind.RESULT, await self._admin(chat, args)
        except Exception as exc:  # an admin command must answer, whatever went wrong
            logger.exception("admin command %s failed", args)
            return OutcomeKind.ERROR, f"⚠️ {self.config.prefix}{ADMIN_COMMAND}: {exc}"

    def _run_help(self, chat: ChatEvent, args: list[str]) -> tuple[OutcomeKind, str]:
        """issue 15: ``!help`` filtered by the very check the router applies before every command."""
        assert self._help is not None
        try:
            text = self._help(
                args,
                lambda plugin: self.access.refusal(plugin, chat, self.config.prefix),
                self.access.is_admin(chat),
            )
        except Exception:  # help must answer, whatever a declaration holds
            logger.exception("help for %s failed", args)
            return (
                OutcomeKind.ERROR,
                f"⚠️ {self.config.prefix}{HELP_COMMAND}: cannot list the commands right now",
            )
        return OutcomeKind.RESULT, text

    def in_flight_ids(self, plugin: str, *, sent_before: float) -> set[str]:
        """s-spread: the correlation ids of ``plugin``'s commands in flight that were sent before
        ``sent_before`` (monotonic); the hub ends those a lost host held (a crash event names them)."""
        return {w.correlation_id for w in self._in_flight.get(plugin, ()) if w.started < sent_before}

    async def _on_plugin_crashed(self, event: Event) -> None:
        plugin = Subjects.plugin_of(event.subject)
        waiting = self._in_flight.get(plugin or "")
        if not waiting:
            return
        crash = LifecycleEvent.from_dict(event.data, state=PluginState.CRASHED)
        if crash.previous not in (None, PluginState.RUNNING):
            # A failed start: the event may arrive after the plugin is already failed, when a new
            # command is in flight that it is not about; that command learns "not running" itself.
            return
        reason = crash.reason or "no reason given"
        held = None if crash.in_flight is None else frozenset(crash.in_flight)  # issue 16: a replica's
        logger.debug("plugin %s crashed (%s); failing %d command(s)", plugin, reason, len(waiting))
        for waiter in list(waiting):
            if held is not None and waiter.correlation_id not in held:
                continue  # held by another replica, which still serves it
            if waiter.crash_reason is None and waiter.task is not None:
                waiter.crash_reason = reason
                waiter.resend = held is not None and crash.idempotent and not waiter.resent
                waiter.task.cancel()
        # --- s-inflight (issue 16): what NATS handed the dead replica but it never read is in no
        # ledger; a barrier through the live replicas finds it (services/replica_barrier.py), on
        # this server and, for a plugin on hosts, through each connected host carrying it.
        if held is not None and crash.replica is not None and plugin:
            rest = [w.correlation_id for w in waiting if w.crash_reason is None and w.correlation_id]
            self._barrier.after_crash(
                plugin,
                crash.replica,
                rest,
                lambda verdict: self._fail_lost(verdict, reason, idempotent=crash.idempotent),
            )

    async def barrier_verdict(self, plugin: str, candidates: tuple[str, ...]) -> BarrierVerdict:
        """Which of ``candidates`` (``plugin``'s commands in flight) no live process of it holds:
        the barrier without a crashed replica (a lost host's, see hosts/spread.py)."""
        return await self._barrier.verdict(plugin, 0, candidates)

    def _fail_lost(self, verdict: BarrierVerdict, reason: str, *, idempotent: bool) -> None:
        """s-inflight: the crash reply (or one re-send) for the commands the barrier found lost."""
        lost = frozenset(verdict.lost)
        for waiter in list(self._in_flight.get(verdict.plugin, ())):
            if waiter.correlation_id in lost and waiter.crash_reason is None and waiter.task is not None:
                waiter.crash_reason = reason
                waiter.resend = idempotent and not waiter.resent
                waiter.task.cancel()

    # --- end s-inflight


class _Waiter:
    """One execute() in flight: its task, and why a crash cancelled it (if one did); issue 16: its
    correlation id (a replica's crash names the ones it held) and whether it is to be re-sent."""

    __slots__ = ("correlation_id", "crash_reason", "resend", "resent", "started", "task")

    def __init__(self, task: asyncio.Task[Any] | None, correlation_id: str = "") -> None:
        self.task = task
        self.correlation_id = correlation_id
        self.started = time.monotonic()  # s-spread: a lost host's commands were sent before it went
        self.crash_reason: str | None = None
        self.resend = False
        self.resent = False


def _reply_for(
    chat: ChatEvent, text: str, redirect: object, default_subject: str
) -> tuple[OutgoingMessage, str]:
    """Where the answer to ``chat`` goes: back where it was said (the same thread, as a reply;
    privately for a private message), unless the plugin's ``response_channel`` says otherwise.

    ``response_channel`` may name a ``channel`` (and ``thread_id``) on the same or another
    ``platform``, or ask for ``private: true`` (to the user who sent the command); it cannot send
    privately to anyone else.
    """
    if isinstance(redirect, Mapping):
        subject = default_subject
        platform = redirect.get("platform")
        if isinstance(platform, str) and platform and platform != chat.platform:
            try:
                subject = Subjects.chat_send(platform)
            except ValueError:
                logger.warning("response_channel names an invalid platform %r; answered in place", platform)
                platform = None
        if redirect.get("private") is True:
            return OutgoingMessage(text=text, private_to=chat.user.id), default_subject
        channel = redirect.get("channel")
        if isinstance(channel, str) and channel:
            thread = redirect.get("thread_id")
            return OutgoingMessage(
                text=text, channel=channel, thread_id=thread if isinstance(thread, str) else None
            ), subject
    if chat.private:
        return OutgoingMessage(text=text, private_to=chat.user.id, reply_to=chat.message_id), default_subject
    return (
        OutgoingMessage(text=text, channel=chat.channel, thread_id=chat.thread_id, reply_to=chat.message_id),
        default_subject,
    )
