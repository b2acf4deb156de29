"""What ``/readyz`` decides: ready, or the reasons why not, from the typed status alone.

Ready means: the core's NATS connection is up, and every enabled plugin and adapter is running
or was deliberately stopped (``rosey stop``) or disabled. Starting, restarting (backoff), failed
and crashed processes make the bot unready, each with one line saying which and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.rosey.supervision.status import PluginState, PluginStatus, RoseyStatus

__all__ = ["READY_STATES", "Readiness", "readiness"]

#: States in which a process does not make the bot unready.
READY_STATES = frozenset(
    {PluginState.RUNNING, PluginState.STOPPED, PluginState.STOPPING, PluginState.DISABLED}
)


@dataclass(frozen=True, kw_only=True)
class Readiness:
    reasons: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, object]:
        return {"ready": self.ready, "reasons": list(self.reasons)}


def _why(plugin: PluginStatus) -> str:
    what = f"{plugin.kind} '{plugin.name}' is {plugin.state.value}"
    detail = plugin.reason or plugin.last_exit
    return f"{what}: {detail}" if detail else what


def readiness(status: RoseyStatus, *, nats_connected: bool, started: bool = True) -> Readiness:
    """Ready, or every reason it is not (start-up and NATS first, then each process in the
    status's order)."""
    reasons = [] if started else ["rosey is still starting"]
    if not nats_connected:
        reasons.append("the core is not connected to NATS")
    reasons += [_why(p) for p in status.plugins if p.state not in READY_STATES]
    return Readiness(reasons=tuple(reasons))
