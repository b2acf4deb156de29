"""What the router saw of commands: how many ended each way, and how long they took, per plugin.

The router hands every :class:`~bot.rosey.services.router.CommandOutcome` to :meth:`record`
(a dict update and a bisect, well under a microsecond); ``/metrics`` reads :meth:`snapshot` at
scrape time. Labels stay low-cardinality: a command for a plugin this bot does not run (a typo
in chat) counts under :data:`OTHER_PLUGIN`, never under the name the user typed.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from bot.rosey.services.router import CommandOutcome, OutcomeKind

__all__ = ["LATENCY_BUCKETS", "OTHER_PLUGIN", "CommandMetrics", "CommandSnapshot", "LatencyHistogram"]

#: Upper bounds (seconds) of the latency histogram's buckets: a round trip is ~1 ms here, a
#: command that calls out to the web takes seconds, the default timeout is 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
OTHER_PLUGIN = "(other)"


@dataclass(frozen=True, kw_only=True)
class LatencyHistogram:
    """Cumulative counts per bucket of :data:`LATENCY_BUCKETS` (then +Inf = ``count``), and the sum."""

    buckets: tuple[int, ...]
    count: int
    sum_seconds: float


@dataclass(frozen=True, kw_only=True)
class CommandSnapshot:
    #: (plugin, outcome kind) -> commands that ended so.
    outcomes: Mapping[tuple[str, str], int] = field(default_factory=dict)
    latency: Mapping[str, LatencyHistogram] = field(default_factory=dict)


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, not cumulative; last: +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def frozen(self) -> LatencyHistogram:
        cumulative, total = [], 0
        for count in self.counts[:-1]:
            total += count
            cumulative.append(total)
        return LatencyHistogram(buckets=tuple(cumulative), count=sum(self.counts), sum_seconds=self.sum)


class CommandMetrics:
    """Counts outcomes and latencies of commands routed to the plugins named in ``plugins``."""

    def __init__(self, plugins: Collection[str]) -> None:
        self._plugins = frozenset(plugins)
        self._outcomes: dict[tuple[str, str], int] = {}
        self._latency: dict[str, _Histogram] = {}

    def record(self, outcome: CommandOutcome) -> None:
        plugin = outcome.plugin if outcome.plugin in self._plugins else OTHER_PLUGIN
        key = (plugin, outcome.kind.value)
        self._outcomes[key] = self._outcomes.get(key, 0) + 1
        if outcome.kind is OutcomeKind.REFUSED:
            return  # never sent to a plugin: no latency to speak of
        histogram = self._latency.get(plugin)
        if histogram is None:
            histogram = self._latency[plugin] = _Histogram()
        histogram.observe(outcome.elapsed)

    def snapshot(self) -> CommandSnapshot:
        return CommandSnapshot(
            outcomes=dict(self._outcomes),
            latency={plugin: histogram.frozen() for plugin, histogram in self._latency.items()},
        )
