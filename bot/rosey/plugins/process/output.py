"""Continuous capture of a plugin's stdout and stderr into bounded buffers.

The pipes are read by the event loop as data arrives, so a plugin that prints a lot never
blocks on a full pipe, and the host never holds more than ``max_lines`` lines per plugin. Each
line is made :func:`~bot.rosey.terminal.printable` as it is captured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from bot.rosey.terminal import printable

__all__ = ["LogForwarder", "OutputBuffer", "OutputLine", "PipeReader", "capture_pipe"]

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

    def tail(self, stream: str, count: int) -> list[str]:
        buffered = self.by_stream[stream]
        count = max(0, min(count, len(buffered)))
        return list(buffered)[len(buffered) - count :]


class _LineProtocol(asyncio.Protocol):
    def __init__(self, buffer: OutputBuffer, stream: str, closed: asyncio.Future[None]) -> None:
        self._buffer = buffer
        self._stream = stream
        self._partial = b""
        self._closed = closed

    def data_received(self, data: bytes) -> None:
        self._buffer.total_bytes += len(data)
        chunk = self._partial + data
        *complete, self._partial = chunk.split(b"\n")
        for raw in complete:
            self._emit(raw)
        if len(self._partial) > MAX_LINE_BYTES:  # a line without end: cut it, don't hoard it
            self._emit(self._partial)
            self._partial = b""

    def _emit(self, raw: bytes) -> None:
        if len(raw) > MAX_LINE_BYTES:
            raw = raw[:MAX_LINE_BYTES] + b"...[truncated]"
        # Escaped once, here: every reader of the buffer (the log, `rosey logs`, a start error,
        # JSON) gets text that cannot drive a terminal.
        self._buffer.append(self._stream, printable(raw.rstrip(b"\r").decode("utf-8", errors="replace")))

    def connection_lost(self, exc: Exception | None) -> None:
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


async def capture_pipe(pipe: IO[Any], buffer: OutputBuffer, stream: str) -> PipeReader:
    """Start reading ``pipe`` into ``buffer`` until end of file or :meth:`PipeReader.close`."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.connect_read_pipe(lambda: _LineProtocol(buffer, stream, closed), pipe)
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
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            self.suppressed += 1
            return
        self._tokens -= 1.0
        if self.suppressed:
            self._logger.warning(
                "[%s] ... %d lines not logged (output rate limit)", self._name, self.suppressed
            )
            self.suppressed = 0
        self._logger.info("[%s] %s", self._name, line.text)
