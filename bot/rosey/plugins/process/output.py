"""Continuous capture of a plugin's stdout and stderr into bounded buffers.

The pipes are read by the event loop as data arrives, within the plugin's output budget
(:mod:`bot.rosey.plugins.process.budget`): a plugin that writes faster than that waits on its
own full pipe, and the host never holds more than ``max_lines`` lines per plugin. Each line is
made :func:`~bot.rosey.terminal.printable` as it is captured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from bot.rosey.plugins.process.budget import OutputBudget
from bot.rosey.terminal import printable

__all__ = ["HOST_STREAM", "LogForwarder", "OutputBuffer", "OutputLine", "PipeReader", "capture_pipe"]

#: The stream of lines the host writes into a plugin's log (what it requested and was not
#: granted): a plugin writes only stdout and stderr, so it cannot forge one of these.
HOST_STREAM = "rosey"

MAX_LINE_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class OutputLine:
    timestamp: float
    stream: str  # "stdout" or "stderr"
    text: str


LineCallback = Callable[[OutputLine], None]


class OutputBuffer:
    """The last ``max_lines`` lines a plugin wrote, per stream and interleaved."""

    def __init__(self, max_lines: int = 1000) -> None:
        self.max_lines = max_lines
        self.lines: deque[OutputLine] = deque(maxlen=max_lines)
        self.by_stream: dict[str, deque[str]] = {
            "stdout": deque(maxlen=max_lines),
            "stderr": deque(maxlen=max_lines),
            HOST_STREAM: deque(maxlen=max_lines),
        }
        self.total_bytes = 0
        self.total_lines = 0
        self._listeners: list[LineCallback] = []

    def add_listener(self, callback: LineCallback) -> Callable[[], None]:
        """Call ``callback`` for every new line; returns a function that removes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def append(self, stream: str, text: str) -> None:
        line = OutputLine(time.time(), stream, text)
        self.lines.append(line)
        self.by_stream[stream].append(text)
        self.total_lines += 1
        for listener in list(self._listeners):
            listener(line)

    def note(self, text: str) -> None:
        """A line from the host about this plugin, kept (and shown by ``rosey logs``) among its own."""
        self.append(HOST_STREAM, printable(text))

    def tail(self, stream: str, count: int) -> list[str]:
        buffered = self.by_stream[stream]
        count = max(0, min(count, len(buffered)))
        return list(buffered)[len(buffered) - count :]


class _LineProtocol(asyncio.Protocol):
    """Splits one pipe into lines for ``buffer``, within ``budget`` if there is one.

    Without a budget every read is split and handed on at once. With one, a read is charged its
    bytes and each line handed on one line; lines beyond the budget stay in ``_pending`` (at most
    one read) and the pipe is not read again until they are out and the bytes are paid for.
    """

    def __init__(
        self,
        buffer: OutputBuffer,
        stream: str,
        closed: asyncio.Future[None],
        budget: OutputBudget | None = None,
    ) -> None:
        self._buffer = buffer
        self._stream = stream
        self._partial = b""  # the start of a line whose end has not been read yet
        self._pending = b""  # read, not split yet: waits for the line budget
        self._closed = closed
        self._budget = budget
        self._transport: asyncio.ReadTransport | None = None
        self._held = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer.total_bytes += len(data)
        budget = self._budget
        if budget is None:
            self._pending = data
            self._take(None)
            return
        budget.spend_read(len(data))
        self._pending += data  # empty: reading is paused while anything is pending
        self._drain()

    def wake(self) -> None:
        """Look at the budget again now instead of at the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held and self._transport is not None and not self._transport.is_closing():
            self._drain()

    def _drain(self) -> None:
        """Hand on what the budget allows, then read on, or hold back and look again later."""
        self._timer = None
        budget = self._budget
        assert budget is not None
        budget.refill()
        if budget.flood is not None:  # reported: the plugin is being stopped, its output is noise
            self._pending = self._partial = b""
        else:
            self._take(budget.lines_allowed())
        if self._pending or not budget.may_read(held=self._held):
            self._hold(budget)
        elif self._held:
            self._held = False
            budget.release(self)
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()

    def _hold(self, budget: OutputBudget) -> None:
        if not self._held and self._transport is not None:
            self._held = True
            self._transport.pause_reading()
        budget.hold(self, lines_waiting=bool(self._pending))
        delay = budget.wait_seconds(lines_waiting=bool(self._pending))
        self._timer = asyncio.get_running_loop().call_later(delay, self._drain)

    def _take(self, allowed: int | None) -> None:
        """Split ``_pending`` into lines, at most ``allowed`` of them (None: all); keep the rest."""
        data, self._pending = self._pending, b""
        if allowed is None:
            parts = data.split(b"\n")
        elif allowed == 0:
            if b"\n" in data:
                self._pending = data
                return
            parts = [data]
        else:
            parts = data.split(b"\n", allowed)
            if len(parts) > allowed and b"\n" in parts[-1]:
                self._pending, parts[-1] = parts[-1], b""
        # Every part but the last ends a line; the last one continues the unfinished line.
        if len(parts) > 1:
            parts[0] = self._partial + parts[0]
            self._partial = parts.pop()
            for raw in parts:
                self._emit(raw)
            if self._budget is not None:
                self._budget.spend_lines(len(parts))
        else:
            self._partial += parts[0]
        if len(self._partial) > MAX_LINE_BYTES:  # a line without end: cut it, don't hoard it
            self._emit(self._partial)
            self._partial = b""
            if self._budget is not None:
                self._budget.spend_lines(1)

    def _emit(self, raw: bytes) -> None:
        if len(raw) > MAX_LINE_BYTES:
            raw = raw[:MAX_LINE_BYTES] + b"...[truncated]"
        # Escaped once, here: every reader of the buffer (the log, `rosey logs`, a start error,
        # JSON) gets text that cannot drive a terminal.
        self._buffer.append(self._stream, printable(raw.rstrip(b"\r").decode("utf-8", errors="replace")))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._budget is not None:
            self._budget.release(self)
            if self._budget.flood is not None:
                self._pending = self._partial = b""
        self._take(None)  # what is left: at most one read, and the plugin is gone
        if self._partial:
            self._emit(self._partial)
            self._partial = b""
        if not self._closed.done():
            self._closed.set_result(None)


@dataclass(frozen=True)
class PipeReader:
    """One pipe being read into a buffer: ``closed`` resolves at end of file."""

    transport: asyncio.ReadTransport
    closed: asyncio.Future[None]

    def close(self) -> None:
        """Stop reading now (a grandchild still holds the write end open): no transport leaks."""
        if not self.transport.is_closing():
            self.transport.close()


async def capture_pipe(
    pipe: IO[Any], buffer: OutputBuffer, stream: str, budget: OutputBudget | None = None
) -> PipeReader:
    """Start reading ``pipe`` into ``buffer`` until end of file or :meth:`PipeReader.close`.

    With a ``budget`` (shared by a plugin's pipes), reading waits whenever it is spent.
    """
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.connect_read_pipe(lambda: _LineProtocol(buffer, stream, closed, budget), pipe)
    return PipeReader(transport=transport, closed=closed)


class LogForwarder:
    """Forwards a plugin's lines to a logger, prefixed with its name, at a bounded rate.

    Reading the pipe is cheap; formatting and writing a log record is not (~10-20 µs). A
    plugin printing 50 MB would otherwise keep the supervisor's event loop busy for seconds,
    and a busy reader lets the pipe fill up, which blocks the plugin. So at most ``rate``
    lines per second (bursts up to ``burst``) reach the log; the rest are counted and
    reported in one line, and all of them stay in the plugin's buffer for ``rosey logs``.
    """

    def __init__(
        self, logger: logging.Logger, plugin_name: str, rate: float = 200.0, burst: float = 1000.0
    ) -> None:
        self._logger = logger
        self._name = plugin_name
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = time.monotonic()
        self.suppressed = 0

    def __call__(self, line: OutputLine) -> None:
        if line.stream == HOST_STREAM:
            return  # the host logged it already, as itself (not as the plugin's output)
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            self.suppressed += 1
            return
        self._tokens -= 1.0
        if self.suppressed:
            self._logger.warning(
                "[%s] ... %d lines not logged (output rate limit)",
                self._name,
                self.suppressed,
                extra={"plugin": self._name},
            )
            self.suppressed = 0
        self._logger.info("[%s] %s", self._name, line.text, extra={"plugin": self._name})
