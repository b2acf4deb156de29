"""The output budget: a plugin's pipes are read at its rate, beyond it the writer waits, and a
writer that keeps its readers held back is reported as a flood, once, with the reason."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from bot.rosey.plugins.process.budget import READ_COST_BYTES, OutputBudget, OutputRate
from bot.rosey.plugins.process.output import (
    MAX_LINE_BYTES,
    OutputBuffer,
    OutputLine,
    PipeReader,
    capture_pipe,
)

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(20)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class Reader:
    woken: int = 0

    def wake(self) -> None:
        self.woken += 1


@dataclass
class Floods:
    reasons: list[str] = field(default_factory=list)
    event: asyncio.Event | None = None

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        if self.event is not None:
            self.event.set()


# ---------------------------------------------------------------------- the budget alone


def budget(clock: Clock, floods: Floods, **rate: float) -> OutputBudget:
    return OutputBudget(OutputRate(**rate), "noisy", floods, clock=clock)


def test_rates_are_validated() -> None:
    with pytest.raises(ValueError, match="lines_per_second must be a positive number"):
        OutputRate(lines_per_second=0)
    with pytest.raises(ValueError, match="flood_seconds must be a positive number"):
        OutputRate(bytes_per_second=1, flood_seconds=float("nan"))
    assert OutputRate(bytes_per_second=3 << 20).describe("bytes") == "3 MiB/s"
    assert OutputRate(bytes_per_second=1536).describe("bytes") == "1.5 KiB/s"
    assert OutputRate(lines_per_second=2000).describe("lines") == "2000 lines/s"


def test_held_back_all_along_is_a_flood_reported_once() -> None:
    clock, floods, reader = Clock(), Floods(), Reader()
    spent = budget(clock, floods, lines_per_second=2000, flood_seconds=3.0)
    for _ in range(60):  # a reader held back, looking again every 50 ms
        spent.hold(reader, lines_waiting=True)
        clock.now += 0.05
    # Reported at the first look after 90 % of the window was held back (2.75 s), and only once.
    assert floods.reasons == [
        "output flood: over the limit of 2000 lines/s for 3 s (output held back 92% of that time)"
    ]
    assert spent.flood == floods.reasons[0]


def test_output_held_back_only_part_of_the_time_is_not_a_flood() -> None:
    clock, floods, reader = Clock(), Floods(), Reader()
    spent = budget(clock, floods, bytes_per_second=1024, flood_seconds=3.0)
    for _ in range(200):  # held half the time for 20 s: bursts above the rate, quiet in between
        spent.hold(reader, lines_waiting=False)
        clock.now += 0.05
        spent.release(reader)
        clock.now += 0.05
    assert floods.reasons == []
    assert spent.held_share() == pytest.approx(0.5, abs=0.02)


def test_the_held_share_counts_two_readers_held_at_once_as_one() -> None:
    clock, floods = Clock(), Floods()
    spent = budget(clock, floods, bytes_per_second=1024, flood_seconds=4.0)
    out, err = Reader(), Reader()
    spent.hold(out, lines_waiting=False)
    clock.now += 1.0
    spent.hold(err, lines_waiting=False)
    clock.now += 1.0
    spent.release(out)
    spent.release(err)
    clock.now += 2.0
    assert spent.held_share() == pytest.approx(0.5)


def test_each_read_costs_at_least_read_cost_bytes() -> None:
    clock, floods = Clock(), Floods()
    spent = budget(clock, floods, bytes_per_second=READ_COST_BYTES, burst_seconds=1.0)
    spent.spend_read(1)  # one byte, charged like READ_COST_BYTES: the burst is gone
    assert spent.may_read(held=False)
    spent.spend_read(1)
    assert not spent.may_read(held=False)


def test_the_exit_of_the_plugin_wakes_held_readers_with_an_allowance() -> None:
    clock, floods, reader = Clock(), Floods(), Reader()
    spent = budget(clock, floods, lines_per_second=10, burst_seconds=1.0)
    spent.spend_lines(10)
    assert spent.lines_allowed() == 0
    spent.hold(reader, lines_waiting=True)
    spent.process_exited(allowance_lines=5000)
    assert reader.woken == 1 and spent.lines_allowed() == 5000
    clock.now += 1.0
    spent.refill()  # an allowance beyond the burst is kept until spent
    assert spent.lines_allowed() == 5000


# ---------------------------------------------------------------------- through a real pipe


@dataclass
class Pipe:
    buffer: OutputBuffer
    reader: PipeReader
    write_fd: int
    lines: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def listen(self, line: OutputLine) -> None:
        self.lines.append(line.text)
        self._changed.set()

    async def until(self, predicate: Callable[[list[str]], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not predicate(self.lines):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def close_writer(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1


MakePipe = Callable[[OutputBudget | None], Awaitable[Pipe]]


@pytest.fixture
async def make_pipe() -> AsyncIterator[MakePipe]:
    pipes: list[Pipe] = []

    async def make(spent: OutputBudget | None) -> Pipe:
        read_fd, write_fd = os.pipe()
        buffer = OutputBuffer(100_000)
        reader = await capture_pipe(os.fdopen(read_fd, "rb"), buffer, "stderr", spent)
        pipe = Pipe(buffer, reader, write_fd)
        buffer.add_listener(pipe.listen)
        pipes.append(pipe)
        return pipe

    yield make
    for pipe in pipes:
        pipe.close_writer()
        pipe.reader.close()
        await asyncio.wait_for(pipe.reader.closed, 5)


def write_in_thread(fd: int, data: bytes) -> tuple[threading.Thread, list[float]]:
    """Write ``data`` with blocking writes, as a plugin does; the list gets the seconds it took."""
    took: list[float] = []

    def run() -> None:
        started = time.monotonic()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, took


async def test_lines_over_the_budget_wait_and_none_is_lost(make_pipe: MakePipe) -> None:
    spent = OutputBudget(OutputRate(lines_per_second=10_000, burst_seconds=0.05), "noisy", Floods())
    pipe = await make_pipe(spent)
    expected = [f"line {n:05d}" for n in range(3000)]
    started = time.monotonic()
    os.write(pipe.write_fd, "".join(f"{text}\n" for text in expected).encode())  # fits in the pipe
    await pipe.until(lambda lines: len(lines) >= len(expected))
    assert pipe.lines == expected
    assert time.monotonic() - started >= 0.2  # 500 at once (the burst), 2500 at 10 000/s
    assert spent.flood is None


async def test_a_writer_over_its_byte_rate_waits_on_its_own_writes(make_pipe: MakePipe) -> None:
    spent = OutputBudget(OutputRate(bytes_per_second=4 << 20, burst_seconds=0.05), "noisy", Floods())
    pipe = await make_pipe(spent)
    data = (b"y" * 1023 + b"\n") * 2048  # 2 MiB, far more than a pipe holds
    thread, took = write_in_thread(pipe.write_fd, data)
    await pipe.until(lambda lines: len(lines) >= 2048)
    await asyncio.to_thread(thread.join, 5)  # not on the loop: the reader must run meanwhile
    assert took and took[0] >= 0.3  # ~0.45 s at 4 MiB/s: the writer paid for it in waiting
    assert pipe.buffer.total_bytes == len(data)


async def test_a_burst_within_the_budget_is_read_at_once(make_pipe: MakePipe) -> None:
    spent = OutputBudget(OutputRate(bytes_per_second=1 << 20, lines_per_second=2000), "noisy", Floods())
    pipe = await make_pipe(spent)
    os.write(pipe.write_fd, b"start-up line\n" * 4000)  # a chatty start: within the 5 s burst
    await pipe.until(lambda lines: len(lines) >= 4000, timeout=1.0)
    assert spent.held_share() == 0.0


async def test_a_flood_is_reported_and_its_output_dropped_until_the_end(make_pipe: MakePipe) -> None:
    floods = Floods(event=asyncio.Event())
    rate = OutputRate(lines_per_second=1000, burst_seconds=0.1, flood_seconds=0.5)
    spent = OutputBudget(rate, "noisy", floods)
    pipe = await make_pipe(spent)
    thread, took = write_in_thread(pipe.write_fd, b"x\n" * (4 << 20))  # 8 MiB of one-byte lines
    await asyncio.wait_for(floods.event.wait(), 5)
    assert floods.reasons[0].startswith("output flood: over the limit of 1000 lines/s for 0.5 s")
    # Once reported, the rest is read and dropped (the supervisor is killing the writer).
    await asyncio.to_thread(thread.join, 5)  # not on the loop: the reader must run meanwhile
    assert took, "the writer was never let go"
    lines_at_report = len(pipe.lines)
    pipe.close_writer()
    await asyncio.wait_for(pipe.reader.closed, 5)
    assert len(pipe.lines) == lines_at_report < 2000
    assert floods.reasons == [floods.reasons[0]]


async def test_the_plugin_exiting_lets_its_last_lines_through_at_once(make_pipe: MakePipe) -> None:
    spent = OutputBudget(OutputRate(lines_per_second=100, burst_seconds=0.1), "noisy", Floods())
    pipe = await make_pipe(spent)
    os.write(pipe.write_fd, b"noise\n" * 3000 + b"Traceback: the last words\n")
    await pipe.until(lambda lines: len(lines) >= 10)
    spent.process_exited()
    await pipe.until(lambda lines: "Traceback: the last words" in lines, timeout=2.0)  # not in 30 s


@pytest.mark.parametrize("limited", [False, True])
async def test_lines_are_escaped_and_cut_as_they_are_captured(make_pipe: MakePipe, limited: bool) -> None:
    spent = OutputBudget(OutputRate(lines_per_second=2000), "noisy", Floods()) if limited else None
    pipe = await make_pipe(spent)
    os.write(pipe.write_fd, b"\x1b[2Jcleared\r\n" + b"z" * (MAX_LINE_BYTES + 10) + b"\n\xe2\x80\xaeend\n")
    await pipe.until(lambda lines: len(lines) >= 3)
    assert pipe.lines[0] == "\\x1b[2Jcleared"  # a CR before the line end is dropped, as always
    assert pipe.lines[1] == "z" * MAX_LINE_BYTES + "...[truncated]"
    assert pipe.lines[-1] == "\\u202eend"
