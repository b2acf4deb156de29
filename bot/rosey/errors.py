"""The one exception hierarchy of Rosey.

Every error Rosey raises derives from :class:`RoseyError`; where a builtin describes the same
failure, the class inherits it too (right-hand column), so ``except TimeoutError`` keeps working
for callers who do not know Rosey's names::

    RoseyError                      Exception
    +-- ConfigError                 ValueError        .key .file
    |   +-- SecretUnavailable                         .key
    +-- InvalidSubject              ValueError        .subject
    +-- MalformedEvent              ValueError        .subject
    +-- BusNotConnected             ConnectionError   .subject
    +-- RequestTimeout              TimeoutError      .subject .timeout
    +-- NoResponders                LookupError       .subject
    +-- PayloadTooLarge             ValueError        .subject .size .limit
    +-- NatsServerError             RuntimeError
    |   +-- NatsServerNotFound      FileNotFoundError
    |   +-- NatsMonitorError                          .url
    +-- ZygoteError                 OSError
    +-- ProgramNotRunnable          ValueError
    +-- NotRunning                  LookupError
    +-- AlreadyRunning              RuntimeError
    +-- HarnessNotConnected         RuntimeError
    +-- CliError
    +-- DeliveryFailed
    +-- PlatformError               ConnectionError
    +-- ServiceError                                  .service .details
        +-- StorageError
        |   +-- StorageQuotaExceeded                  .limit
        +-- GatewayError
        |   +-- GatewayRefused                        .rule
        |   +-- GatewayRateLimited                    .retry_after
        +-- FileTooLarge            ValueError        .size .limit
    +-- PluginError                                   .plugin
        +-- PluginNotFound          KeyError
        +-- PluginNotStarted        RuntimeError
        +-- PluginNotConnected      RuntimeError
        +-- PluginNameMismatch      RuntimeError      .declared
        +-- PluginStartError        RuntimeError
        |   +-- PluginReloadError   (issue 16: the old version keeps serving)
        +-- PluginCommandError
        +-- HostModuleRefused       ImportError       .module
        +-- PluginHintWarning       UserWarning
        +-- PluginEnvironmentError                    .output
    +-- CommandDeclarationError     ValueError        .command
    +-- UsageError                  ValueError

Exceptions carry their subject as attributes (last column; every ``PluginError`` has
``.plugin``), passed as keyword-only arguments after the message, so ``exc.args`` is always
``(message,)`` and ``str(exc)`` is the message: they pickle and print like builtins. An attribute
is None where the raiser did not know it.

nats-py's and the socket's errors become these in one place, the event bus
(:mod:`bot.rosey.core.event_bus`), always with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "AlreadyRunning",
    "BusNotConnected",
    "CliError",
    "CommandDeclarationError",
    "ConfigError",
    "DeliveryFailed",
    "FileTooLarge",
    "GatewayError",
    "GatewayRateLimited",
    "GatewayRefused",
    "HarnessNotConnected",
    "HostModuleRefused",
    "InvalidSubject",
    "MalformedEvent",
    "NatsMonitorError",
    "NatsServerError",
    "NatsServerNotFound",
    "NoResponders",
    "NotRunning",
    "PayloadTooLarge",
    "PlatformError",
    "PluginCommandError",
    "PluginEnvironmentError",
    "PluginError",
    "PluginHintWarning",
    "PluginNameMismatch",
    "PluginNotConnected",
    "PluginNotFound",
    "PluginNotStarted",
    "PluginReloadError",
    "PluginStartError",
    "ProgramNotRunnable",
    "RequestTimeout",
    "RoseyError",
    "SecretUnavailable",
    "ServiceError",
    "StorageError",
    "StorageQuotaExceeded",
    "UsageError",
    "ZygoteError",
]


class RoseyError(Exception):
    """Root of every error raised by Rosey."""


# ------------------------------------------------------------------ configuration and the wire


class ConfigError(RoseyError, ValueError):
    """A configuration file or value is invalid; the message names the file, key and reason.

    ``key`` is the dotted key (``plugins.echo.max_threads``) and ``file`` the file, when known.
    """

    def __init__(self, message: str, *, key: str | None = None, file: Path | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.file = file


class SecretUnavailable(ConfigError):
    """A configured secret cannot be read now (its variable is unset, its file unreadable)."""


class InvalidSubject(RoseyError, ValueError):
    """A NATS subject, or a name that must stand as one subject token (a plugin name, an action), is invalid.

    ``subject`` is the rejected value.
    """

    def __init__(self, message: str, *, subject: object = None) -> None:
        super().__init__(message)
        self.subject = subject


class MalformedEvent(RoseyError, ValueError):
    """A message on the bus is not a valid Rosey event envelope; ``subject`` is where it arrived."""

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject


class BusNotConnected(RoseyError, ConnectionError):
    """The event bus is used before ``connect()`` or after ``disconnect()``, or could not connect.

    ``subject`` is the subject of the publish or subscribe that failed, if it was one.
    """

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject


class RequestTimeout(RoseyError, TimeoutError):
    """A request on the bus got no reply in time (``subject``, ``timeout`` in seconds).

    A flush that did not complete is one too, without a subject.
    """

    def __init__(self, message: str, *, subject: str | None = None, timeout: float | None = None) -> None:
        super().__init__(message)
        self.subject = subject
        self.timeout = timeout


class NoResponders(RoseyError, LookupError):
    """A request was sent to a subject that nobody is subscribed to."""

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject


class PayloadTooLarge(RoseyError, ValueError):
    """A message of ``size`` bytes is over the server's ``max_payload`` (``limit``); nothing was sent."""

    def __init__(
        self, message: str, *, subject: str | None = None, size: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.subject = subject
        self.size = size
        self.limit = limit

    def sizes(self) -> str:
        """``5.00 MB > 1 MB``, as a person reads it (MB = 2**20 bytes, as NATS counts them)."""
        return f"{_megabytes(self.size)} > {_megabytes(self.limit)}"


def _megabytes(size: int | None) -> str:
    # Two decimals, so a size just over a limit never prints as the limit itself.
    if size is None:
        return "? MB"
    return f"{size / 2**20:.2f} MB" if size % 2**20 else f"{size // 2**20} MB"


# ------------------------------------------------------------------ the host's processes


class NatsServerError(RoseyError, RuntimeError):
    """The embedded nats-server could not be started or stopped."""


class NatsServerNotFound(NatsServerError, FileNotFoundError):
    """The nats-server binary is not installed."""


class NatsMonitorError(NatsServerError):
    """A NATS server's HTTP monitoring endpoint (``url``) could not be read or gave no usable answer."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ZygoteError(RoseyError, OSError):
    """The zygote could not fork a plugin process (it died, or refused the request)."""


class ProgramNotRunnable(RoseyError, ValueError):
    """The program of a plugin's ``command`` cannot run it: missing, not executable, or a script."""


class NotRunning(RoseyError, LookupError):
    """No ``rosey run`` instance is running for this configuration."""


class AlreadyRunning(RoseyError, RuntimeError):
    """Another ``rosey run`` holds this state directory; the message names its pid and start."""


class HarnessNotConnected(RoseyError, RuntimeError):
    """The plugin test harness is used before ``connect()``."""


class CliError(RoseyError):
    """A failure the ``rosey`` command reports in one line before it exits 2."""


# ------------------------------------------------------------------ plugins


class PluginError(RoseyError):
    """Base for errors about one plugin, named by ``plugin``."""

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class PluginNotFound(PluginError, KeyError):
    """No plugin with that name is known (or the module named for one holds no single plugin class)."""

    def __str__(self) -> str:
        # KeyError shows the repr of its key; this message is a sentence.
        return Exception.__str__(self)


class PluginNotStarted(PluginError, RuntimeError):
    """A plugin process is waited on or watched before it was ever started."""


class PluginNotConnected(PluginError, RuntimeError):
    """A plugin uses the bus before ``run()`` connected it."""


class PluginNameMismatch(PluginError, RuntimeError):
    """A plugin's own ``plugin_name`` (``declared``) is not the name Rosey started it as (``plugin``)."""

    def __init__(self, message: str, *, plugin: str | None = None, declared: str | None = None) -> None:
        super().__init__(message, plugin=plugin)
        self.declared = declared


class PluginStartError(PluginError, RuntimeError):
    """A plugin process could not be spawned, or died or timed out before it reported ready."""


class PluginReloadError(PluginStartError):
    """issue 16: the new version of a plugin did not get ready; the old one keeps serving.
    ``reason``: why the new version failed, in one line."""

    def __init__(self, message: str, *, plugin: str | None = None, reason: str = "") -> None:
        super().__init__(message, plugin=plugin)
        self.reason = reason or message


class PluginCommandError(PluginError):
    """A plugin answered a command with an error."""


# ------------------------------------------------------------------ declared commands (issue 15)


class CommandDeclarationError(RoseyError, ValueError):
    """A plugin's declared command (``Command(...)``, ``@command``) is malformed: a bad usage
    grammar, an overlong or multi-line help text, a name used twice. Raised when the plugin starts."""

    def __init__(self, message: str, *, command: str | None = None) -> None:
        super().__init__(message)
        self.command = command


class UsageError(RoseyError, ValueError):
    """A command's arguments do not fit its usage; the SDK answers with the usage line. A handler
    may raise it too (``raise UsageError("2d1: a die needs 2 sides")``) for checks of its own."""


# ------------------------------------------------------------------ end of declared commands


class HostModuleRefused(PluginError, ImportError):
    """Plugin code imported one of Rosey's host modules (``module``), which do not run in a plugin
    process; the message names the importing file and line and what to use instead."""

    def __init__(self, message: str, *, plugin: str | None = None, module: str | None = None) -> None:
        super().__init__(message, plugin=plugin)
        self.module = module
        self.name = module  # ImportError's own attribute: the module that could not be imported


class PluginHintWarning(PluginError, UserWarning):
    """What the test harness warns with when a plugin it runs said how to fix a mistake that did
    not stop it (a blocked event loop, say); ``-W error`` turns it into a failure."""


class PluginEnvironmentError(PluginError):
    """A plugin's own environment could not be built (``rosey plugins install``): the message says
    why in one line, ``output`` holds the installer's full output (shown with ``--verbose``)."""

    def __init__(self, message: str, *, plugin: str | None = None, output: str = "") -> None:
        super().__init__(message, plugin=plugin)
        self.output = output


class DeliveryFailed(RoseyError):
    """An adapter's ``deliver()`` says a message can never be sent (no such channel, refused by the
    platform): the outbox drops and logs it and moves on. Any other exception there is taken as
    transient: the message is tried again (after the reconnect, if the session ended)."""


class PlatformError(RoseyError, ConnectionError):
    """A chat platform refused or failed what an adapter's session needs (a login, a sync): the
    session ends and the adapter reconnects with backoff. Each adapter says which platform call
    failed and why, in one line."""


# ------------------------------------------------------------------ plugin services


class ServiceError(RoseyError):
    """A host-side service (storage, HTTP gateway, files) refused a plugin's request.

    It travels back over the bus as ``{"ok": false, "error": str(exc), "error_type": <class name>,
    **details}`` (:meth:`to_wire`) and the SDK raises the same class again (:meth:`from_wire`), so a
    plugin catches ``StorageQuotaExceeded`` whatever process raised it. ``details`` holds the
    subject attributes (``limit``, ``retry_after``, ``rule``...) as plain JSON values.
    """

    def __init__(self, message: str, *, service: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.service = service
        self.details = details
        for key, value in details.items():
            setattr(self, key, value)

    def to_wire(self) -> dict[str, object]:
        return {
            "error": str(self),
            "error_type": type(self).__name__,
            "service": self.service,
            **self.details,
        }

    @staticmethod
    def from_wire(data: dict[str, object]) -> ServiceError:
        """The error a service's ``{"ok": false, ...}`` reply describes (a ServiceError if unknown)."""
        classes = {cls.__name__: cls for cls in _service_errors(ServiceError)}
        cls = classes.get(str(data.get("error_type")), ServiceError)
        details = {k: v for k, v in data.items() if k not in ("ok", "error", "error_type", "service")}
        service = data.get("service")
        return cls(
            str(data.get("error") or "the service refused the request"),
            service=service if isinstance(service, str) else None,
            **details,
        )


def _service_errors(root: type[ServiceError]) -> list[type[ServiceError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_service_errors(sub))
    return found


class StorageError(ServiceError):
    """A storage request failed (a bad key, a value that is not JSON, the store unavailable)."""


class StorageQuotaExceeded(StorageError):
    """A write would pass one of the plugin's storage limits (``limit`` names it); nothing was written."""


class GatewayError(ServiceError):
    """An HTTP request through the gateway failed (the remote server, a timeout)."""


class GatewayRefused(GatewayError):
    """The gateway refused an HTTP request no grant allows (``rule`` says which check refused it)."""


class GatewayRateLimited(GatewayError):
    """Too many HTTP requests: try again after ``retry_after`` seconds."""


class FileTooLarge(ServiceError, ValueError):
    """A file is bigger than the plugin may send (``size`` and ``limit`` in bytes)."""
