"""Per-plugin command counters and latencies, kept inside the plugin and reported on ping.

Cheap enough for every command: two integer increments and one append to a bounded deque.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

__all__ = ["CommandStats"]


class CommandStats:
    """Counts and recent latencies of the commands one plugin handled."""

    def __init__(self, window: int = 512) -> None:
        self.started = time.time()
        self.commands = 0
        self.errors = 0
        self.in_flight = 0
        self._latencies: deque[float] = deque(maxlen=window)

    def begin(self) -> float:
        self.in_flight += 1
        return time.perf_counter()

    def end(self, started: float, *, failed: bool) -> None:
        self.in_flight -= 1
        self.commands += 1
        if failed:
            self.errors += 1
        self._latencies.append(time.perf_counter() - started)

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self._latencies)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        return {
            "commands": self.commands,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "latency_ms_p50": pct(0.50),
            "latency_ms_p99": pct(0.99),
        }
