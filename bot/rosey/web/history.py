"""The dashboard's memory: 15 minutes of per-plugin figures, and command rates from the router.

The supervisor keeps about two minutes of samples per plugin; the dashboard plots fifteen. So
the dashboard keeps its own ring, fed once per tick (every plugin at once, sharing one time
column): CPU %, memory MB and the p50/p95 latency of the commands that ended during the tick.
It is columnar, in fixed-size ``array('d')`` buffers (NaN for "no value"), so its size is known
up front: 8 bytes x (1 + 4 x plugins) x ticks in the window (100 plugins, 2 s ticks: 1.4 MB),
whatever runs.

Command figures come from the router's cumulative counters (:class:`CommandSnapshot`): a rate
is the difference between now and a snapshot about a minute old, a latency percentile is read
from the difference of two histograms, interpolated inside a bucket as Prometheus'
``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot.rosey.services.command_metrics import LATENCY_BUCKETS, CommandSnapshot, LatencyHistogram

__all__ = [
    "METRICS",
    "RATE_WINDOW_SECONDS",
    "WINDOW_SECONDS",
    "CommandRates",
    "CommandWindow",
    "History",
    "histogram_quantile",
]

WINDOW_SECONDS = 900.0  # what the plots show: the last 15 minutes
RATE_WINDOW_SECONDS = 60.0  # commands/min, error rate, p50/p95 in the table: the last minute

#: The figures kept per plugin and tick, in this order.
METRICS = ("cpu", "mem", "p50", "p95")

NAN = math.nan


def histogram_quantile(
    q: float, cumulative: Sequence[int], count: int, bounds: Sequence[float] = LATENCY_BUCKETS
) -> float | None:
    """The ``q`` quantile (seconds) of ``count`` observations with ``cumulative[i]`` at or below
    ``bounds[i]``; None without observations. Linear inside the bucket it falls in (from 0 for
    the first); past the last bound, that bound (as Prometheus answers for the +Inf bucket)."""
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0
    for bound, at_or_below in zip(bounds, cumulative, strict=False):
        if at_or_below >= rank and at_or_below > below:
            return lower + (bound - lower) * (rank - below) / (at_or_below - below)
        lower, below = bound, at_or_below
    return bounds[-1] if bounds else None


def _difference(now: LatencyHistogram | None, then: LatencyHistogram | None) -> tuple[list[int], int]:
    if now is None:
        return [], 0
    if then is None:
        return list(now.buckets), now.count
    return [a - b for a, b in zip(now.buckets, then.buckets, strict=True)], now.count - then.count


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


@dataclass(frozen=True, kw_only=True)
class CommandRates:
    """A plugin's chat commands (through the router) over the rate window."""

    per_minute: float
    error_rate: float | None  # fraction of commands that did not end in a result; None: no commands
    p50_ms: float | None
    p95_ms: float | None

    def __post_init__(self) -> None:
        if self.per_minute < 0:
            raise ValueError("per_minute must be >= 0")


class CommandWindow:
    """The router's snapshots over the last :data:`RATE_WINDOW_SECONDS` (one per tick: a few dozen
    small dicts), giving per-plugin rates and per-tick latency percentiles."""

    def __init__(self, *, interval: float, window: float = RATE_WINDOW_SECONDS) -> None:
        self.window = window
        self._snapshots: deque[tuple[float, CommandSnapshot]] = deque(maxlen=math.ceil(window / interval) + 1)

    def add(self, t: float, snapshot: CommandSnapshot) -> None:
        self._snapshots.append((t, snapshot))

    def _pair(self, *, last_tick: bool) -> tuple[float, CommandSnapshot | None, CommandSnapshot | None]:
        """(seconds between, older, newer): the last two snapshots, or the newest and the oldest kept."""
        if not self._snapshots:
            return 0.0, None, None
        t_new, new = self._snapshots[-1]
        if len(self._snapshots) < 2:
            return 0.0, None, new
        t_old, old = self._snapshots[-2] if last_tick else self._snapshots[0]
        return t_new - t_old, old, new

    def tick_latency(self) -> dict[str, tuple[float | None, float | None]]:
        """p50 and p95 (ms) per plugin of the commands that ended since the previous tick (only
        plugins that had some: an idle plugin costs nothing here)."""
        _, old, new = self._pair(last_tick=True)
        if new is None or old is None:
            return {}
        out = {}
        for plugin, histogram in new.latency.items():
            before = old.latency.get(plugin)
            if before is not None and before.count == histogram.count:
                continue
            buckets, count = _difference(histogram, before)
            out[plugin] = (
                _ms(histogram_quantile(0.5, buckets, count)),
                _ms(histogram_quantile(0.95, buckets, count)),
            )
        return out

    def rates(self) -> dict[str, CommandRates]:
        """Per plugin that had commands in the window: its rate, error rate and latency."""
        span, old, new = self._pair(last_tick=False)
        if new is None or old is None or span <= 0:
            return {}
        totals: dict[str, list[int]] = {}  # plugin -> [commands, failed]
        for key, count in new.outcomes.items():
            done = count - old.outcomes.get(key, 0)
            if done <= 0:
                continue
            plugin, outcome = key
            counts = totals.setdefault(plugin, [0, 0])
            counts[0] += done
            if outcome != "result":
                counts[1] += done
        out = {}
        for plugin, (total, failed) in totals.items():
            buckets, count = _difference(new.latency.get(plugin), old.latency.get(plugin))
            out[plugin] = CommandRates(
                per_minute=round(total * 60.0 / span, 2),
                error_rate=round(failed / total, 4),
                p50_ms=_ms(histogram_quantile(0.5, buckets, count)),
                p95_ms=_ms(histogram_quantile(0.95, buckets, count)),
            )
        return out


class History:
    """The last ``window`` seconds of per-plugin figures, one row per tick, in fixed memory."""

    def __init__(self, *, interval: float, window: float = WINDOW_SECONDS) -> None:
        if interval <= 0 or window < interval:
            raise ValueError("history: interval must be > 0 and window >= interval")
        self.capacity = math.ceil(window / interval) + 1
        self._times = array("d", [NAN]) * self.capacity
        self._columns: dict[str, dict[str, array[float]]] = {}
        self._next = 0  # slot the next tick goes to
        self.size = 0

    def _column_set(self, plugin: str) -> dict[str, array[float]]:
        columns = self._columns.get(plugin)
        if columns is None:
            columns = self._columns[plugin] = {m: array("d", [NAN]) * self.capacity for m in METRICS}
        return columns

    def add(self, t: float, rows: Mapping[str, Sequence[float | None]]) -> None:
        """One tick: ``rows`` maps each plugin to its figures in :data:`METRICS` order (None: none).
        Plugins no longer reported are forgotten, so memory follows the plugins that exist."""
        slot = self._next
        self._times[slot] = t
        for plugin in [p for p in self._columns if p not in rows]:
            del self._columns[plugin]
        for plugin, values in rows.items():
            columns = self._column_set(plugin)
            for metric, value in zip(METRICS, values, strict=True):
                columns[metric][slot] = NAN if value is None else value
        self._next = (slot + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def _order(self) -> Iterable[int]:
        start = (self._next - self.size) % self.capacity
        return ((start + i) % self.capacity for i in range(self.size))

    def copy(self) -> History:
        """A copy that later ticks do not change (memory copies: cheap enough for the loop)."""
        other = History.__new__(History)
        other.capacity, other._next, other.size = self.capacity, self._next, self.size
        other._times = array("d", self._times)
        other._columns = {p: {m: array("d", c) for m, c in cols.items()} for p, cols in self._columns.items()}
        return other

    def times(self) -> list[float]:
        return [self._times[i] for i in self._order()]

    def plugins(self) -> list[str]:
        return list(self._columns)

    def series(self, plugin: str) -> dict[str, list[float | None]]:
        """The plugin's figures, oldest first, aligned with :meth:`times` (None where there was none)."""
        columns = self._columns.get(plugin)
        order = list(self._order())
        if columns is None:
            return {metric: [None] * len(order) for metric in METRICS}
        out: dict[str, list[float | None]] = {}
        for metric in METRICS:
            column = columns[metric]
            out[metric] = [None if (v := column[i]) != v else v for i in order]
        return out
