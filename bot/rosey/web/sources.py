"""What the web surface reads, handed over by the composition root: functions called at request
time, so nothing is copied or kept here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.rosey.services.chat_relay import RelayStats
from bot.rosey.services.command_metrics import CommandSnapshot
from bot.rosey.supervision.status import RoseyStatus

__all__ = ["WebSources"]


@dataclass(frozen=True, kw_only=True)
class WebSources:
    """The one status, the core's NATS link, whether the bot finished starting (every plugin's
    first start ended, either way), and, when there are a router and a relay, their counters."""

    status: Callable[[], RoseyStatus]
    nats_connected: Callable[[], bool]
    started: Callable[[], bool]
    commands: Callable[[], CommandSnapshot] | None = None
    relay: Callable[[], RelayStats] | None = None
