"""How late the core's own event loop ran: so that its stalls are not blamed on a plugin.

A liveness ping is a request with a deadline on the core's loop. If that loop stalls (a burst of
work, the GIL held by a thread, the machine starved of CPU), the reply may sit unread in the
socket while the deadline's timer fires as soon as the loop wakes: the plugin looks dead for the
core's own fault. :class:`LoopLag` wakes every ``tick`` seconds and records by how much each wake-up
was late; :meth:`LoopLag.lag_since` adds up that lateness over a window, the time the loop was
not available, which the watchdog subtracts from a ping's timeout before it counts a miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

__all__ = ["LoopLag"]


class LoopLag:
    """A ticker on the running loop; ``lag_since(t)`` is the lateness summed over ticks after ``t``."""

    def __init__(self, tick: float = 0.05, keep: float = 30.0) -> None:
        if tick <= 0 or keep < tick:
            raise ValueError("tick must be positive and keep at least one tick")
        self.tick = tick
        self._samples: deque[tuple[float, float]] = deque(maxlen=max(2, int(keep / tick)))
        self._due: float | None = None  # when the tick under way should wake
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rosey-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def lag_since(self, since: float) -> float:
        """Seconds the loop was late over the ticks that ended after ``since`` (``time.monotonic()``)."""
        total = 0.0
        for ended, late in reversed(self._samples):
            if ended <= since:
                break
            total += late
        # A tick overdue right now: the caller runs just after a stall, before the ticker's turn.
        now = time.monotonic()
        if self._due is not None and now > self._due:
            total += now - max(self._due, since)
        return total

    async def _run(self) -> None:
        while True:
            self._due = time.monotonic() + self.tick
            await asyncio.sleep(self.tick)
            ended = time.monotonic()
            self._samples.append((ended, max(0.0, ended - self._due)))
