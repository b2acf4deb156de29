"""The contract between the host and a plugin process, imported by both ends.

What crosses the process boundary, and nothing else:

* :class:`Env`: every environment variable the host sets for a plugin process, or the plugin
  process reads. Both ends use its members rather than spelling the names.
* The readiness pipe: the runner opens a pipe and passes its write end as ``ROSEY_READY_FD``;
  the plugin writes one line once it is connected, subscribed and started. Like systemd's
  ``sd_notify``, it costs nothing when nobody listens and needs no timer on either side.
  Before that, the launcher writes the pipe's first line, :class:`LaunchReport` (the sandbox
  layers it applied), after the sandbox and before any plugin code: plugin code can write to the
  pipe too, but never before that line, so the runner trusts the first line and nothing later.
* :class:`ExitCode`: what a plugin process's exit status means when the plugin did not choose it.
* :class:`PingReply`: the SDK's answer to the supervisor's liveness ping. It comes from code the
  host does not trust, so :meth:`PingReply.from_wire` accepts anything and keeps what is sane;
  its ``sandbox`` is the plugin's claim, never shown as what is in force.
* :class:`Launch`: what the launcher did in this process before plugin code ran (the sandbox
  layers in force; whether ``run_plugin()`` was called). It is process-local, not wire: the
  launcher records it, the SDK reads it when it answers a ping.

Plugin processes import this module, so it imports nothing host-side and nothing expensive: the
standard library only (``asyncio`` only inside the runner's :func:`watch_ready`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "LAUNCH_PREFIX",
    "ON_START_MESSAGE",
    "READY_MESSAGE",
    "Env",
    "ExitCode",
    "Launch",
    "LaunchReport",
    "PingReply",
    "announce_launch",
    "current_launch",
    "mark_plugin_started",
    "notify_on_start",
    "notify_ready",
    "record_launch",
    "watch_ready",
]


class Env(StrEnum):
    """Environment variables of a plugin process: set by the host, read in the plugin process."""

    # Where and who on NATS (the public API's names: a plugin run by hand reads them too).
    NATS_URL = "NATS_URL"
    NATS_TOKEN = "NATS_TOKEN"
    NATS_USER = "NATS_USER"
    NATS_PASSWORD = "NATS_PASSWORD"
    # The plugin's identity and home.
    PLUGIN_NAME = "ROSEY_PLUGIN_NAME"
    DATA_DIR = "ROSEY_DATA_DIR"
    # Launch handshake: each is removed from the environment once used (READY_FD at ready, the
    # other two before any plugin code runs).
    READY_FD = "ROSEY_READY_FD"
    PARENT_PID = "ROSEY_PARENT_PID"
    SANDBOX = "ROSEY_SANDBOX"
    # A plugin with its own environment: its site directories, added once the sandbox is on.
    SITE_DIRS = "ROSEY_SITE_DIRS"
    # Operator settings the SDK honours.
    MAX_CONCURRENCY = "ROSEY_MAX_CONCURRENCY"
    # issue 16: this process is replica N of its plugin: it keeps the readiness pipe open after
    # READY as its command ledger (bot.rosey.plugins.ledger).
    REPLICA = "ROSEY_REPLICA"
    # issue 16: join the command queue group only once on_start succeeded (the new version of a
    # reload: a start that fails must not have taken commands it can no longer answer).
    JOIN_AFTER_START = "ROSEY_JOIN_AFTER_START"
    PLUGIN_LOG_LEVEL = "ROSEY_PLUGIN_LOG_LEVEL"
    # An adapter process: its settings from [adapters.NAME] (JSON, no secrets) and its secrets
    # (JSON {"password": "..."}), both removed from the environment as the adapter starts.
    ADAPTER_SETTINGS = "ROSEY_ADAPTER_SETTINGS"
    ADAPTER_SECRETS = "ROSEY_ADAPTER_SECRETS"
    # The process itself: the host sets these, the zygote child re-reads them when it becomes a
    # plugin (a fork inherits what the interpreter derived from the zygote's values).
    PATH = "PATH"
    HOME = "HOME"
    TMPDIR = "TMPDIR"
    PYTHONPATH = "PYTHONPATH"
    PYTHONUNBUFFERED = "PYTHONUNBUFFERED"
    PYTHONIOENCODING = "PYTHONIOENCODING"
    PYTHONDONTWRITEBYTECODE = "PYTHONDONTWRITEBYTECODE"
    LANG = "LANG"
    LC_ALL = "LC_ALL"
    LC_CTYPE = "LC_CTYPE"
    TZ = "TZ"


class ExitCode(IntEnum):
    """Exit statuses a plugin process gets from Rosey's code rather than from the plugin's."""

    OK = 0
    #: ``run_plugin()``: connect, ``on_start`` or the run loop raised (the traceback is on stderr).
    PLUGIN_FAILED = 1
    #: The launcher's argv is wrong, or a plugin file names no single plugin class to run.
    USAGE = 2
    #: EX_OSERR: the process could not be prepared (fds, environment, parent gone); no plugin code ran.
    SETUP_FAILED = 71
    #: EX_CONFIG: a strict sandbox could not be applied in full, or its policy did not parse.
    SANDBOX_REFUSED = 78


# ---------------------------------------------------------------------- readiness

READY_MESSAGE = b"READY\n"


def notify_ready() -> bool:
    """Tell the runner this process is ready; return whether anybody was listening."""
    raw = os.environ.pop(Env.READY_FD, None)
    if not raw:
        return False
    try:
        fd = int(raw)
        os.write(fd, READY_MESSAGE)
        if not os.environ.get(Env.REPLICA):  # a replica's ledger goes on on this pipe (issue 16)
            os.close(fd)
    except (ValueError, OSError):
        return False
    return True


#: The SDK's line before it calls ``on_start`` (connected and subscribed by then): a start that
#: times out after it is reported as "on_start did not finish". Said by plugin code, so it only
#: ever changes the wording of that plugin's own failure.
ON_START_MESSAGE = b"ON_START\n"


def notify_on_start() -> bool:
    """Tell the runner ``on_start`` begins (the descriptor stays open for READY)."""
    raw = os.environ.get(Env.READY_FD)
    if not raw:
        return False
    try:
        os.write(int(raw), ON_START_MESSAGE)
    except (ValueError, OSError):
        return False
    return True


#: Start of the launcher's line on the readiness pipe; a JSON object follows, then a newline.
LAUNCH_PREFIX = b"LAUNCHED "
# A line longer than this before READY is not Rosey's protocol (the launcher's line is far shorter,
# and at most PIPE_BUF, 4096 bytes on Linux, so it is written atomically and arrives whole).
_MAX_LINE = 4096


def announce_launch(report: LaunchReport) -> bool:
    """The launcher's side: write ``report`` as the readiness pipe's first line, before plugin code.

    Returns False when nobody listens (no ``ROSEY_READY_FD``). Raises OSError when the pipe
    cannot take it: the launcher must then not run plugin code, or the plugin would write first.
    The fd stays open (and in the environment) for the SDK's READY.
    """
    raw = os.environ.get(Env.READY_FD)
    if not raw:
        return False
    try:
        fd = int(raw)
    except ValueError:
        raise OSError(f"{Env.READY_FD} is not a file descriptor: {raw!r}") from None
    os.write(fd, report.to_line())
    return True


def watch_ready(
    ready_read: int,
    on_launch: Callable[[LaunchReport], None] | None = None,
    on_start_begun: Callable[[], None] | None = None,
    on_other: Callable[[bytes], None] | None = None,
) -> asyncio.Future[bool]:
    """The runner's side: a future that becomes True when READY arrives on ``ready_read``, False
    when the pipe closes without it (or carries something that is not this protocol). Cancel the
    future to stop watching.

    ``on_launch`` gets the launcher's report if, and only if, it is the pipe's first line: plugin
    code runs after the launcher wrote it, so a report anywhere else is the plugin's forgery and is
    ignored, as is any other line before READY. ``on_start_begun`` is called when the SDK says
    it calls ``on_start``. ``on_other`` gets any other bytes (a replica's ledger, issue 16).
    """
    import asyncio

    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool] = loop.create_future()
    pending = bytearray()
    first_line = True

    def on_line(line: bytes) -> bool:
        nonlocal first_line
        if first_line:
            first_line = False
            report = LaunchReport.from_line(line)
            if report is not None:
                if on_launch is not None:
                    on_launch(report)
                return False
        if line == ON_START_MESSAGE:
            if on_start_begun is not None:
                on_start_begun()
            return False
        if line == READY_MESSAGE:
            return True
        if on_other is not None:  # issue 16: a replica's ledger lines (commands taken before READY)
            on_other(line)
        return False

    def on_readable() -> None:
        try:
            data = os.read(ready_read, _MAX_LINE)
        except OSError:
            data = b""
        if answer.done():
            return
        if not data:
            answer.set_result(False)
            return
        pending.extend(data)
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[: end + 1])
            del pending[: end + 1]
            if on_line(line):
                if pending and on_other is not None:  # read with READY: the ledger's (issue 16)
                    on_other(bytes(pending))
                answer.set_result(True)
                return
        if len(pending) > _MAX_LINE:
            answer.set_result(False)

    loop.add_reader(ready_read, on_readable)
    answer.add_done_callback(lambda _: loop.remove_reader(ready_read))
    return answer


@dataclass(frozen=True, kw_only=True)
class LaunchReport:
    """What the launcher applied before plugin code ran, as it tells the runner on the readiness pipe.

    ``sandbox``: the protections in force, in order; None when no sandbox was asked for. This,
    not the plugin's own :class:`PingReply`, is what ``rosey status`` shows.
    """

    sandbox: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.sandbox is not None:
            object.__setattr__(self, "sandbox", tuple(self.sandbox))

    def to_line(self) -> bytes:
        body = json.dumps({"sandbox": list(self.sandbox) if self.sandbox is not None else None})
        return LAUNCH_PREFIX + body.encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> LaunchReport | None:
        """The report in ``line``, or None when it is not one; never raises."""
        if not line.startswith(LAUNCH_PREFIX) or not line.endswith(b"\n"):
            return None
        try:
            data = json.loads(line[len(LAUNCH_PREFIX) :])
        except ValueError:
            return None
        if not isinstance(data, Mapping):
            return None
        raw = data.get("sandbox")
        sandbox = _layers(raw) if raw is not None else None
        if raw is not None and sandbox is None:
            return None  # not what a launcher writes
        return cls(sandbox=sandbox)


# ---------------------------------------------------------------------- liveness ping

_MAX_COUNT = 2**63 - 1
_MAX_LAYERS = 32
_MAX_LAYER_NAME = 64
_MAX_SANDBOX_TEXT = _MAX_LAYERS * (_MAX_LAYER_NAME + 1)
_COUNTS = ("commands", "errors", "in_flight", "permission_violations", "malformed")
_LATENCIES = ("latency_ms_p50", "latency_ms_p99")


def _count(value: object) -> int:
    # bool is an int to Python, not to the wire: a plugin saying `true` reported no count.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_COUNT:
        return value
    return 0


def _latency(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _layers(value: object) -> tuple[str, ...] | None:
    """The sandbox layers as sent (``"rlimits,seccomp"``; a list is accepted too), or None."""
    if isinstance(value, str) and len(value) <= _MAX_SANDBOX_TEXT:
        items: list[object] = list(value.split(","))
    elif isinstance(value, (list, tuple)) and len(value) <= _MAX_LAYERS:
        items = list(value)
    else:
        return None
    names = [item.strip() for item in items if isinstance(item, str)]
    return tuple(name for name in names if name and len(name) <= _MAX_LAYER_NAME)[:_MAX_LAYERS]


@dataclass(frozen=True, kw_only=True)
class PingReply:
    """A plugin's answer to the liveness ping: its command counters and the protections it claims.

    ``sandbox`` is None when the plugin process was started without a sandbox (or reported none).
    On the wire it is one comma-separated string. It is the plugin's word (plugin code can answer
    anything): ``rosey status`` shows the launcher's :class:`LaunchReport` instead.
    """

    commands: int = 0
    errors: int = 0
    in_flight: int = 0
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    permission_violations: int = 0
    malformed: int = 0
    sandbox: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"PingReply.{name} must be a non-negative int, got {value!r}")
        for name in _LATENCIES:
            value = getattr(self, name)
            if value is not None and _latency(value) is None:
                raise ValueError(f"PingReply.{name} must be a non-negative number or None, got {value!r}")
        if self.sandbox is not None:
            object.__setattr__(self, "sandbox", tuple(self.sandbox))

    def to_wire(self) -> dict[str, Any]:
        """The JSON-able payload of the ``pong`` event."""
        return {
            "commands": self.commands,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "latency_ms_p50": self.latency_ms_p50,
            "latency_ms_p99": self.latency_ms_p99,
            "permission_violations": self.permission_violations,
            "malformed": self.malformed,
            "sandbox": ",".join(self.sandbox) if self.sandbox is not None else None,
        }

    @classmethod
    def from_wire(cls, data: object) -> PingReply:
        """Read a reply sent by a plugin; never raises. Unknown keys are ignored, and a missing or
        malformed value (wrong type, negative, not finite, oversized) reads as its default."""
        if not isinstance(data, Mapping):
            return cls()
        return cls(
            commands=_count(data.get("commands")),
            errors=_count(data.get("errors")),
            in_flight=_count(data.get("in_flight")),
            latency_ms_p50=_latency(data.get("latency_ms_p50")),
            latency_ms_p99=_latency(data.get("latency_ms_p99")),
            permission_violations=_count(data.get("permission_violations")),
            malformed=_count(data.get("malformed")),
            sandbox=_layers(data.get("sandbox")),
        )


# ---------------------------------------------------------------------- the launch record


@dataclass(frozen=True, kw_only=True)
class Launch:
    """What happened in this process before (and as) plugin code started.

    ``sandbox``: the protections the launcher applied, in order; None when no sandbox was asked
    for (or the plugin runs outside the launcher). ``plugin_started``: ``run_plugin()`` was
    called, so the launcher must not start a plugin class of the file a second time.
    """

    sandbox: tuple[str, ...] | None = None
    plugin_started: bool = False


# A context variable rather than a module global: asyncio.run() copies the caller's context into
# its tasks, so the SDK's ping handler sees what the launcher recorded, while code that runs
# plugins in-process (tests, a harness) never leaks one run's record into the next.
_NO_LAUNCH = Launch()
_LAUNCH: contextvars.ContextVar[Launch] = contextvars.ContextVar("rosey_launch", default=_NO_LAUNCH)


def current_launch() -> Launch:
    """The launch record of the running plugin (an empty one outside the launcher)."""
    return _LAUNCH.get()


def record_launch(launch: Launch) -> None:
    """The launcher's side: record what it did, before it runs any plugin code."""
    _LAUNCH.set(launch)


def mark_plugin_started() -> None:
    """The SDK's side: ``run_plugin()`` is starting a plugin in this process."""
    _LAUNCH.set(dataclasses.replace(_LAUNCH.get(), plugin_started=True))
