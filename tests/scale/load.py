"""Steady command traffic for the issue-16 tests: ``rate`` commands per second, each its own task,
every outcome kept (a lost command would show as a missing or timed-out outcome)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bot.rosey.services.router import CommandOutcome, CoreRouter, OutcomeKind


@dataclass
class Load:
    router: CoreRouter
    plugin: str
    args: list[str]
    rate: float = 200.0
    timeout: float = 10.0
    outcomes: list[CommandOutcome] = field(default_factory=list)
    sent: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: asyncio.Task[None] | None = None
    _answered: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> Load:
        self._runner = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sent += 1
            task = asyncio.create_task(self._one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:  # pacing: the load's clock, not a wait for something to happen
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    pass

    async def _one(self) -> None:
        outcome = await self.router.execute(self.plugin, list(self.args), user="load", timeout=self.timeout)
        self.outcomes.append(outcome)
        self._answered.set()

    async def until(self, predicate: object, timeout: float = 10.0) -> None:
        """Wait (on answers) until ``predicate(self)`` holds."""

        async def wait() -> None:
            while not predicate(self):  # type: ignore[operator]
                self._answered.clear()
                await self._answered.wait()

        await asyncio.wait_for(wait(), timeout)

    async def stop(self) -> list[CommandOutcome]:
        """Stop sending and wait for every command sent to end."""
        self._stop.set()
        if self._runner is not None:
            await self._runner
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        assert len(self.outcomes) == self.sent, (len(self.outcomes), self.sent)
        return self.outcomes

    def kinds(self) -> dict[OutcomeKind, int]:
        counts: dict[OutcomeKind, int] = {}
        for outcome in self.outcomes:
            counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
        return counts
