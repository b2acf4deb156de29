"""Stopping a plugin that floods the bus, judged on what the broker counted, never on its own word.

NATS has no per-user message-rate limit, so Rosey keeps one: something beside the bus (the
embedded nats-server's ``/connz``, read by ``broker/traffic.py``) measures how many messages and
bytes each plugin's connections sent over a short window, denied publishes included, and how
many subscriptions they hold, and hands that to :meth:`FloodGuard.check`. A plugin above its
``max_publish_rate``, ``max_publish_bytes_rate`` or ``max_subscriptions`` is killed with a
reason starting "flood" and restarts per its policy. Subscriptions count because each is a
copy the server makes of every matching message: 10,000 subscriptions to ``rosey.events.>``
turn each chat line into 10,000 deliveries.

The supervisor does not care where the rates come from (it never imports the broker): a test or
another broker can feed :meth:`FloodGuard.check` directly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from bot.rosey.supervision.spec import Limits
from bot.rosey.supervision.status import PluginState
from bot.rosey.supervision.supervisor import Supervisor

__all__ = ["FloodGuard", "PluginTraffic", "flood_violation"]

logger = logging.getLogger(__name__)

_MB = 1_000_000


@dataclass(frozen=True, kw_only=True)
class PluginTraffic:
    """What one plugin sent into NATS per second, averaged over the last ``seconds``, and how many
    subscriptions it holds now (each one a copy of every matching message, made by the server)."""

    msgs_per_second: float
    bytes_per_second: float
    seconds: float
    subscriptions: int = 0

    def __post_init__(self) -> None:
        for name in ("msgs_per_second", "bytes_per_second", "seconds", "subscriptions"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def flood_violation(limits: Limits, rate: PluginTraffic) -> str | None:
    """Why ``rate`` breaks ``limits``, in words ("flood: 52,000 msgs/s > limit 5,000 msgs/s over 2 s"),
    or None."""
    if limits.max_subscriptions is not None and rate.subscriptions > limits.max_subscriptions:
        return f"flood: {rate.subscriptions:,} subscriptions > limit {limits.max_subscriptions:,}"
    over = f"over {rate.seconds:.0f} s"
    if limits.max_publish_rate is not None and rate.msgs_per_second > limits.max_publish_rate:
        return (
            f"flood: {rate.msgs_per_second:,.0f} msgs/s > limit {limits.max_publish_rate:,.0f} msgs/s {over}"
        )
    if limits.max_publish_bytes_rate is not None and rate.bytes_per_second > limits.max_publish_bytes_rate:
        return (
            f"flood: {rate.bytes_per_second / _MB:,.1f} MB/s > "
            f"limit {limits.max_publish_bytes_rate / _MB:,.1f} MB/s {over}"
        )
    return None


class FloodGuard:
    """Kills the running plugins of ``supervisor`` whose publish rate breaks their limits."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        #: The last rates seen, per plugin (for status and tests; the broker's count, not the plugin's).
        self.rates: dict[str, PluginTraffic] = {}

    def check(self, rates: Mapping[str, PluginTraffic]) -> list[str]:
        """Judge one sample (plugin name -> rate); returns the plugins killed for it."""
        self.rates = dict(rates)
        killed = []
        for plugin in self.supervisor.running():
            rate = rates.get(plugin.name)
            process = plugin.process
            if rate is None or process is None or plugin.state is not PluginState.RUNNING:
                continue
            # A window that began before this process started holds its predecessor's traffic
            # too: a flooder restarted a moment ago must not be killed again for the old flood.
            if process.uptime_seconds < rate.seconds:
                continue
            reason = flood_violation(plugin.spec.limits, rate)
            if reason is not None:
                self.supervisor.kill(plugin.name, reason)
                killed.append(plugin.name)
        return killed
