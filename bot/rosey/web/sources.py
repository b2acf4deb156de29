"""What the web surface reads, handed over by the composition root: functions called at request
time, so nothing is copied or kept here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.rosey.plugins.process.output import OutputLine
from bot.rosey.services.chat_relay import RelayStats
from bot.rosey.services.command_metrics import CommandSnapshot
from bot.rosey.supervision.status import PluginStatus, RoseyStatus
from bot.rosey.supervision.supervisor import OutputListener, Supervisor

__all__ = ["OutputSource", "WebSources", "supervisor_control", "supervisor_output"]

#: The lifecycle actions the dashboard's buttons call, named as `rosey start/stop/restart`.
ACTIONS = ("start", "stop", "restart")


@dataclass(frozen=True, kw_only=True)
class OutputSource:
    """Plugins' stdout/stderr for the dashboard's log view: a plugin's recent lines (its bounded
    buffer; raises PluginNotFound for an unknown name), and every new line to a listener."""

    recent: Callable[[str, int], Sequence[OutputLine]]
    listen: Callable[[OutputListener], None]


@dataclass(frozen=True, kw_only=True)
class WebSources:
    """The one status, the core's NATS link, whether the bot finished starting (every plugin's
    first start ended, either way), and, when there are a router and a relay, their counters."""

    status: Callable[[], RoseyStatus]
    nats_connected: Callable[[], bool]
    started: Callable[[], bool]
    commands: Callable[[], CommandSnapshot] | None = None
    relay: Callable[[], RelayStats] | None = None
    # --- dashboard (issue 14): what its buttons and log view need, nothing more.
    #: This run's operator token (buttons and logs need it); None: nobody may act over HTTP.
    operator_token: str | None = None
    #: ``await control(action, name)``: start, stop or restart a plugin as `rosey start/stop/restart`
    #: do, then its status (PluginNotFound, PluginStartError as the supervisor raises them).
    control: Callable[[str, str], Awaitable[PluginStatus]] | None = None
    output: OutputSource | None = None


def supervisor_control(supervisor: Supervisor) -> Callable[[str, str], Awaitable[PluginStatus]]:
    """The supervisor's start/stop/restart, the same calls the control service makes for the CLI."""

    async def control(action: str, name: str) -> PluginStatus:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        supervisor.get(name)  # PluginNotFound before anything happens
        await getattr(supervisor, action)(name)
        return supervisor.get(name).status(history=0)

    return control


def supervisor_output(supervisor: Supervisor) -> OutputSource:
    def recent(name: str, count: int) -> Sequence[OutputLine]:
        process = supervisor.get(name).process
        return list(process.output.lines)[-count:] if process is not None and count > 0 else []

    return OutputSource(recent=recent, listen=supervisor.add_output_listener)
