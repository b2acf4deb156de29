"""The one exception hierarchy of Rosey.

Every error Rosey raises derives from :class:`RoseyError`; where a builtin describes the same
failure, the class inherits it too, so ``except TimeoutError`` keeps working for callers who do
not know Rosey's names.
"""

from __future__ import annotations

__all__ = [
    "BusNotConnected",
    "ConfigError",
    "MalformedEvent",
    "NatsServerError",
    "NatsServerNotFound",
    "NoResponders",
    "PluginCommandError",
    "PluginError",
    "PluginNotFound",
    "PluginStartError",
    "RequestTimeout",
    "RoseyError",
]


class RoseyError(Exception):
    """Root of every error raised by Rosey."""


class ConfigError(RoseyError, ValueError):
    """A configuration file or value is invalid; the message names the file, key and reason."""


class MalformedEvent(RoseyError, ValueError):
    """A message on the bus is not a valid Rosey event envelope."""


class BusNotConnected(RoseyError, ConnectionError):
    """The event bus is used before ``connect()`` or after ``disconnect()``."""


class RequestTimeout(RoseyError, TimeoutError):
    """A request on the bus got no reply in time."""


class NoResponders(RoseyError, LookupError):
    """A request was sent to a subject that nobody is subscribed to."""


class NatsServerError(RoseyError, RuntimeError):
    """The embedded nats-server could not be started or stopped."""


class NatsServerNotFound(NatsServerError, FileNotFoundError):
    """The nats-server binary is not installed."""


class PluginError(RoseyError):
    """Base for errors about one plugin."""


class PluginNotFound(PluginError, LookupError):
    """No plugin with that name is known."""


class PluginStartError(PluginError, RuntimeError):
    """A plugin process died or timed out before it reported ready."""


class PluginCommandError(PluginError):
    """A plugin answered a command with an error."""
