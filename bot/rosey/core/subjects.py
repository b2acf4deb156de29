"""NATS subject names used by Rosey, and validation of the names that go into them.

Subject map::

    rosey.events.<type>                 normalized chat events from platform adapters
    rosey.commands.<plugin>.execute     a command for a plugin (router -> plugin)
    rosey.commands.<plugin>.result      its result (plugin -> router)
    rosey.commands.<plugin>.error       its error  (plugin -> router)
    rosey.plugins.<plugin>.<event>      events a plugin publishes (started, stopped, ...)
    rosey.chat.<platform>.send          replies going back to a chat platform (its adapter alone reads)
    rosey.adapters.<name>.events.<type> what an adapter heard (the core checks it, then republishes
                                        it on rosey.events.<type>; only that adapter may publish)
    rosey.supervisor.<action>           control requests answered by ``rosey run``
    rosey.control.<plugin>.<action>     supervisor -> plugin liveness pings (answered by the SDK)
    rosey.lifecycle.<plugin>.<state>    the supervisor's lifecycle events and stats (core only)
    rosey.services.<service>.<plugin>.<op>  a plugin's request to a host service (storage, http,
                                        files); NATS lets a plugin publish only with its own name
"""

from __future__ import annotations

import re

from bot.rosey.errors import InvalidSubject

__all__ = ["Subjects", "validate_plugin_name", "validate_token"]

_PLUGIN_NAME = re.compile(r"[a-z0-9_]+")
# One subject token: no whitespace, no wildcards, no separator.
_TOKEN = re.compile(r"[^\s.*>]+")


def validate_plugin_name(name: str) -> str:
    """Return ``name`` if it is a valid plugin name, else raise :class:`InvalidSubject` saying why."""
    if not isinstance(name, str) or not _PLUGIN_NAME.fullmatch(name):
        raise InvalidSubject(
            f"invalid plugin name {name!r}: use lowercase letters, digits and underscores only "
            "(e.g. 'trivia', 'calendar_manager')",
            subject=name,
        )
    return name


def validate_token(token: str, what: str = "subject token") -> str:
    """Return ``token`` if it can stand as one NATS subject token, else raise :class:`InvalidSubject`."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise InvalidSubject(
            f"invalid {what} {token!r}: it must be non-empty, without spaces, '.', '*' or '>'", subject=token
        )
    return token


class Subjects:
    """Builders for every subject Rosey uses; see the module docstring for the map."""

    ROOT = "rosey"
    EVENTS = "rosey.events"
    EVENTS_ALL = "rosey.events.>"
    COMMANDS = "rosey.commands"
    PLUGINS = "rosey.plugins"
    CHAT = "rosey.chat"
    ADAPTERS = "rosey.adapters"
    SUPERVISOR = "rosey.supervisor"
    CONTROL = "rosey.control"
    LIFECYCLE = "rosey.lifecycle"
    SERVICES = "rosey.services"

    @staticmethod
    def event(event_type: str) -> str:
        """``rosey.events.<event_type>``: a normalized platform event."""
        return f"{Subjects.EVENTS}.{validate_token(event_type, 'event type')}"

    @staticmethod
    def plugin_command(plugin: str, action: str) -> str:
        """``rosey.commands.<plugin>.<action>`` (action: execute, result or error)."""
        return f"{Subjects.COMMANDS}.{validate_plugin_name(plugin)}.{validate_token(action, 'action')}"

    @staticmethod
    def plugin_event(plugin: str, event: str) -> str:
        """``rosey.plugins.<plugin>.<event>``: an event published by a plugin."""
        return f"{Subjects.PLUGINS}.{validate_plugin_name(plugin)}.{validate_token(event, 'event name')}"

    @staticmethod
    def all_plugin_events(plugin: str) -> str:
        """``rosey.plugins.<plugin>.>``: every event of one plugin."""
        return f"{Subjects.PLUGINS}.{validate_plugin_name(plugin)}.>"

    @staticmethod
    def chat_send(platform: str) -> str:
        """``rosey.chat.<platform>.send``: messages the bot says on a platform."""
        return f"{Subjects.CHAT}.{validate_token(platform, 'platform')}.send"

    @staticmethod
    def adapter_event(adapter: str, event_type: str) -> str:
        """``rosey.adapters.<adapter>.events.<type>``: what adapter ``adapter`` heard on its platform."""
        name = validate_plugin_name(adapter)
        return f"{Subjects.ADAPTERS}.{name}.events.{validate_token(event_type, 'event type')}"

    @staticmethod
    def all_adapter_events(adapter: str = "*") -> str:
        """Events of one adapter (``rosey.adapters.<name>.events.>``), or of every adapter."""
        name = adapter if adapter == "*" else validate_plugin_name(adapter)
        return f"{Subjects.ADAPTERS}.{name}.events.>"

    @staticmethod
    def adapter_of(subject: str) -> tuple[str, str] | None:
        """``rosey.adapters.irc.events.message`` -> ``("irc", "message")``; None for other subjects."""
        parts = subject.split(".")
        if len(parts) == 5 and parts[0] == Subjects.ROOT and parts[1] == "adapters" and parts[3] == "events":
            return parts[2], parts[4]
        return None

    @staticmethod
    def supervisor(action: str) -> str:
        """``rosey.supervisor.<action>``: control requests served by ``rosey run``."""
        return f"{Subjects.SUPERVISOR}.{validate_token(action, 'action')}"

    @staticmethod
    def control(plugin: str, action: str) -> str:
        """``rosey.control.<plugin>.<action>``: supervisor-to-plugin control (``ping``)."""
        return f"{Subjects.CONTROL}.{validate_plugin_name(plugin)}.{validate_token(action, 'action')}"

    @staticmethod
    def lifecycle(plugin: str, state: str) -> str:
        """``rosey.lifecycle.<plugin>.<state>``: the supervisor says ``plugin`` entered ``state``.

        Outside ``rosey.plugins.<plugin>.>`` on purpose: a plugin may publish there, and must not
        be able to announce its own (or another's) crash or recovery.
        """
        return f"{Subjects.LIFECYCLE}.{validate_plugin_name(plugin)}.{validate_token(state, 'state')}"

    @staticmethod
    def lifecycle_events(plugin: str = "*", state: str = "*") -> str:
        """A subscription to lifecycle events: every one by default, ``"*"`` standing for any."""
        plugin = plugin if plugin == "*" else validate_plugin_name(plugin)
        state = state if state == "*" else validate_token(state, "state")
        return f"{Subjects.LIFECYCLE}.{plugin}.{state}"

    @staticmethod
    def service(service: str, plugin: str, op: str) -> str:
        """``rosey.services.<service>.<plugin>.<op>``: plugin ``plugin`` asks host service ``service``."""
        return (
            f"{Subjects.SERVICES}.{validate_token(service, 'service')}."
            f"{validate_plugin_name(plugin)}.{validate_token(op, 'operation')}"
        )

    @staticmethod
    def service_requests(service: str) -> str:
        """What a service subscribes to: every plugin's requests (``rosey.services.<service>.*.*``)."""
        return f"{Subjects.SERVICES}.{validate_token(service, 'service')}.*.*"

    @staticmethod
    def service_plugin(subject: str) -> tuple[str, str] | None:
        """``rosey.services.storage.trivia.get`` -> ``("trivia", "get")``; None for other subjects."""
        parts = subject.split(".")
        if len(parts) == 5 and parts[0] == Subjects.ROOT and parts[1] == "services":
            return parts[3], parts[4]
        return None

    @staticmethod
    def plugin_of(subject: str) -> str | None:
        """The plugin in a ``rosey.commands|plugins|control|lifecycle.<plugin>...`` subject, else None."""
        parts = subject.split(".")
        kinds = ("commands", "plugins", "control", "lifecycle")
        if len(parts) >= 3 and parts[0] == Subjects.ROOT and parts[1] in kinds:
            return parts[2]
        return None
