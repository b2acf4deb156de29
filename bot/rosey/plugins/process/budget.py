"""How much of a plugin's output the host reads per second, and when too much becomes a flood.

Reading a pipe and splitting it into lines costs the host's event loop about 1 µs per line and
a few µs per read, whatever the plugin pays to write them: unlimited, a plugin writing 1 GB or
endless one-byte lines kept the supervisor at 80-100 % of a core for as long as it liked. So a
plugin's stdout and stderr readers share an :class:`OutputBudget`, two token buckets (bytes and
lines per second, each with a burst): a reader that has spent the budget stops reading its pipe
(``pause_reading``) until the buckets refill. The pipe then fills up and the plugin blocks in its
own ``write()``: the cost of the flood moves to the plugin, and nothing is dropped.

A plugin held back like that for most of ``flood_seconds`` (it kept writing faster than its
budget after its burst was spent) is not logging, it is flooding: the budget reports it once,
with the reason, to ``on_flood`` (the supervisor kills the plugin; it restarts per its policy).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["FLOOD_SHARE", "READ_COST_BYTES", "OutputBudget", "OutputRate"]

logger = logging.getLogger(__name__)

#: Each read is charged at least this many bytes: a plugin writing one byte per ``write()`` would
#: otherwise make the host do a read (and an event-loop wake-up, ~5 µs) per byte.
READ_COST_BYTES = 512
#: A held-back reader is looked at again after this long at the earliest, and reads again only
#: with this much budget in hand: a steady flood costs a few wake-ups per second, not thousands.
TICK_SECONDS = 0.05
#: A flood keeps its readers held back for at least this share of ``flood_seconds``. A writer that
#: has more to write than its budget allows is held back nearly all the time (what piled up in the
#: pipe meanwhile is read as soon as reading resumes, and spends the budget again at once), so this
#: is a plugin that wrote faster than its budget all along, once its burst was spent; one that only
#: peaks above it now and then is slowed down for a moment, not killed.
FLOOD_SHARE = 0.9


@dataclass(frozen=True, kw_only=True)
class OutputRate:
    """How fast a plugin's output is read. ``None``: that dimension is not limited.

    Bursts up to ``burst_seconds`` worth of either budget pass at once (a traceback, a start-up
    banner); ``flood_seconds`` is how long a plugin may keep its readers held back before it is
    reported as a flood.
    """

    bytes_per_second: float | None = None
    lines_per_second: float | None = None
    burst_seconds: float = 5.0
    flood_seconds: float = 3.0

    def __post_init__(self) -> None:
        for name in ("bytes_per_second", "lines_per_second", "burst_seconds", "flood_seconds"):
            value = getattr(self, name)
            if value is None and name.endswith("per_second"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
            if value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    def describe(self, dimension: str) -> str:
        """The limit of one dimension ("bytes" or "lines") in words: ``1 MiB/s``, ``2000 lines/s``."""
        if dimension == "lines":
            return f"{self.lines_per_second:g} lines/s"
        value = self.bytes_per_second or 0.0
        for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value >= size:
                return f"{value / size:.3g} {unit}/s"
        return f"{value:g} B/s"


class HeldReader(Protocol):
    """A reader the budget can wake when it may read again at once (the plugin exited)."""

    def wake(self) -> None: ...


class _Bucket:
    """Tokens refilled at ``rate`` per second up to ``burst``; spending may go below zero (a debt)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._last = now

    def refill(self, now: float) -> None:
        if self.tokens < self.burst:  # tokens granted beyond the burst are kept until spent
            self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def seconds_until(self, tokens: float) -> float:
        return max(0.0, (tokens - self.tokens) / self.rate)


class OutputBudget:
    """The output budget of one run of one plugin, shared by its stdout and stderr readers.

    Readers spend bytes as they read and lines as they hand them on; :meth:`hold` and
    :meth:`release` tell the budget when a reader stops and starts reading, which is what
    flood detection measures.
    """

    def __init__(
        self,
        rate: OutputRate,
        plugin: str,
        on_flood: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.plugin = plugin
        self._on_flood = on_flood
        self._clock = clock
        now = clock()
        self._bytes = self._bucket(rate.bytes_per_second, now)
        self._lines = self._bucket(rate.lines_per_second, now)
        self._held: set[HeldReader] = set()
        self._held_since: float | None = None
        self._holds: deque[tuple[float, float]] = deque()  # finished holds inside the flood window
        self._limited_by = "bytes"
        self._warned = False
        self.flood: str | None = None  # the reason, once this run was reported as a flood

    def _bucket(self, rate: float | None, now: float) -> _Bucket | None:
        return None if rate is None else _Bucket(rate, rate * self.rate.burst_seconds, now)

    # ------------------------------------------------------------------ spending

    def refill(self) -> None:
        now = self._clock()
        for bucket in (self._bytes, self._lines):
            if bucket is not None:
                bucket.refill(now)

    def spend_read(self, size: int) -> None:
        """A read of ``size`` bytes happened (charged at least :data:`READ_COST_BYTES`)."""
        if self._bytes is not None:
            self._bytes.tokens -= max(size, READ_COST_BYTES)

    def spend_lines(self, count: int) -> None:
        if self._lines is not None:
            self._lines.tokens -= count

    def lines_allowed(self) -> int | None:
        """How many lines may be handed on now; None: as many as there are."""
        if self._lines is None:
            return None
        return max(0, math.floor(self._lines.tokens))

    def may_read(self, *, held: bool) -> bool:
        """Whether a reader may read on: no byte debt, and a tick's worth in hand after a hold."""
        if self._bytes is None:
            return True
        need = self._quantum(self._bytes) if held else 0.0
        return self._bytes.tokens >= need

    def wait_seconds(self, *, lines_waiting: bool) -> float:
        """How long a held reader waits before it looks again."""
        wait = 0.0
        if self._bytes is not None:
            wait = self._bytes.seconds_until(self._quantum(self._bytes))
        if lines_waiting and self._lines is not None:
            wait = max(wait, self._lines.seconds_until(self._quantum(self._lines)))
        return max(TICK_SECONDS, wait)

    @staticmethod
    def _quantum(bucket: _Bucket) -> float:
        return max(1.0, min(bucket.burst, bucket.rate * TICK_SECONDS))

    # ------------------------------------------------------------------ holding back

    def hold(self, reader: HeldReader, *, lines_waiting: bool) -> None:
        """``reader`` stopped (or still stops) reading for lack of budget; may report a flood."""
        now = self._clock()
        self._limited_by = (
            "lines" if lines_waiting and self._lines is not None and self._lines.tokens < 1 else "bytes"
        )
        if self._bytes is None:
            self._limited_by = "lines"
        if not self._held:
            self._held_since = now
        self._held.add(reader)
        if not self._warned:
            self._warned = True
            logger.warning(
                "plugin '%s' writes more than %s: its output is read at that rate and the plugin waits",
                self.plugin,
                self.rate.describe(self._limited_by),
            )
        self._check_flood(now)

    def release(self, reader: HeldReader) -> None:
        """``reader`` reads again."""
        if reader not in self._held:
            return
        self._held.discard(reader)
        if not self._held and self._held_since is not None:
            now = self._clock()
            self._holds.append((self._held_since, now))
            self._held_since = None

    def held_share(self, now: float | None = None) -> float:
        """The share of the last ``flood_seconds`` during which some reader was held back."""
        now = self._clock() if now is None else now
        window = self.rate.flood_seconds
        start = now - window
        while self._holds and self._holds[0][1] <= start:
            self._holds.popleft()
        held = sum(min(end, now) - max(begin, start) for begin, end in self._holds)
        if self._held_since is not None:
            held += now - max(self._held_since, start)
        return held / window

    def _check_flood(self, now: float) -> None:
        if self.flood is not None:
            return
        share = self.held_share(now)
        if share < FLOOD_SHARE:
            return
        self.flood = (
            f"output flood: over the limit of {self.rate.describe(self._limited_by)} "
            f"for {self.rate.flood_seconds:g} s (output held back {share:.0%} of that time)"
        )
        self._on_flood(self.flood)

    def process_exited(self, allowance_bytes: int = 1 << 18, allowance_lines: int = 1 << 16) -> None:
        """The plugin exited: what it wrote last (a traceback) may still sit behind held-back output.

        Grant one allowance beyond the burst (about what a pipe holds) and wake the held readers,
        so those last lines are read now; a descendant still writing is held back again after it.
        """
        if self._bytes is not None:
            self._bytes.tokens = max(self._bytes.tokens, 0.0) + allowance_bytes
        if self._lines is not None:
            self._lines.tokens = max(self._lines.tokens, 0.0) + allowance_lines
        for reader in list(self._held):
            reader.wake()
