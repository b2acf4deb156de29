"""The console adapter: chat with Rosey from a terminal (or a pipe) without any chat platform.

Each non-empty input line becomes a ``rosey.events.message`` event from platform ``console``;
every message on ``rosey.chat.console.send`` is printed as ``rosey> <text>``, its control
characters shown as escapes (a reply is a plugin's text: it must not drive the terminal) and its
further lines indented under the first (none can pass for a prompt). At end of input (Ctrl-D, or
the end of a piped script) ``run()`` waits a little for the replies to the commands it sent, so
piped input (``echo '!echo hi' | rosey run``) prints the answer before it exits.

How input is read without blocking the event loop, and why not ``loop.connect_read_pipe``:
that transport switches the fd to O_NONBLOCK, and on a terminal stdin and stdout usually share
one open file description, so stdout would turn non-blocking too and a long print could fail
with BlockingIOError; it also refuses regular files. Instead, pipes, sockets and terminals are
watched with ``loop.add_reader`` and read with one ``os.read`` per wake-up (which cannot block:
data or EOF is there). Anything the selector cannot watch (a regular file, /dev/null, a
StringIO, Windows consoles) is read by a daemon thread - a dedicated one, not the loop's
executor, because ``asyncio.run`` joins the executor at exit and would hang on a blocked read.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import stat
import sys
import threading
from typing import IO, Any

from bot.rosey.core.chat import FileRef
from bot.rosey.core.event_bus import EventBus, Subscription
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import RoseyError
from bot.rosey.terminal import printable_lines

__all__ = ["PLATFORM", "ConsoleAdapter"]

logger = logging.getLogger(__name__)

PLATFORM = "console"
_CONTINUATION = " " * len("rosey> ")


class ConsoleAdapter:
    """Bridges a line-oriented text stream and the bus, as the ``console`` platform.

    ``reply_wait`` bounds how long ``run()`` waits at end of input for replies to lines that
    start with ``command_prefix`` (the router's prefix).
    """

    platform = PLATFORM

    def __init__(
        self,
        bus: EventBus,
        *,
        input_stream: IO[Any] | None = None,
        output: IO[str] | None = None,
        username: str = "console",
        prompt: str = "> ",
        channel: str = "console",
        command_prefix: str = "!",
        reply_wait: float = 15.0,
    ) -> None:
        self.bus = bus
        # Resolved now, not at import: pytest and embedding code swap sys.stdin/stdout.
        self.input = input_stream if input_stream is not None else sys.stdin
        self.output = output if output is not None else sys.stdout
        self.username = username
        self.prompt = prompt
        self.channel = channel
        self.command_prefix = command_prefix
        self.reply_wait = reply_wait
        self._interactive = _isatty(self.input)
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._partial = b""
        self._reader_fd: int | None = None
        self._subscription: Subscription | None = None
        self._pending: set[str] = set()  # ids of commands sent and not answered yet
        self._answered = asyncio.Event()
        self._stopping = False

    async def run(self) -> None:
        """Relay input to the bus until end of input (or ``stop()``), then return."""
        self._subscription = await self.bus.subscribe(Subjects.chat_send(PLATFORM), self._on_reply)
        await self.bus.flush()
        self._start_reading()
        try:
            self._show_prompt()
            while (line := await self._lines.get()) is not None:
                text = line.strip()
                if text:
                    await self._send(text)
                self._show_prompt()
            if not self._stopping and self._pending:
                self._answered.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._answered.wait(), self.reply_wait)
        finally:
            await self._close()

    async def stop(self) -> None:
        """Make ``run()`` return now, without waiting for outstanding replies."""
        self._stopping = True
        self._lines.put_nowait(None)
        self._answered.set()
        await self._close()

    # ------------------------------------------------------------------ bus side

    async def _send(self, text: str) -> None:
        data = {
            "text": text,
            "user": {"username": self.username},
            "channel": self.channel,
            "platform": PLATFORM,
        }
        event = await self.bus.publish(Subjects.event("message"), data, source="console-adapter")
        if text.startswith(self.command_prefix):
            self._pending.add(event.id)

    async def _on_reply(self, event: Event) -> None:
        said = str(event.data.get("text", ""))
        if event.data.get("file") is not None:  # files (6d): saved where the operator can open it
            said = f"{said}\n{await self._save_file(event.data['file'])}"
        text = printable_lines(said, _CONTINUATION)
        start = "\r" if self._interactive else ""  # over a prompt that is already on screen
        self.output.write(f"{start}rosey> {text}\n")
        self.output.flush()
        self._pending.discard(str(event.data.get("in_reply_to")))
        if not self._pending:
            self._answered.set()
        self._show_prompt()

    async def _save_file(self, raw: object) -> str:
        """The files service keeps the file for the operator (``<state>/files/console/``); where."""
        try:
            ref = FileRef.from_wire(raw)
            reply = await self.bus.request(
                Subjects.supervisor("files"),
                {"op": "save", "id": ref.id, "platform": PLATFORM},
                "console-adapter",
                timeout=10.0,
            )
        except RoseyError as exc:
            return f"(a file was sent, but it could not be saved: {exc})"
        if not reply.data.get("ok"):
            return f"(the file {ref.describe()} could not be saved: {reply.data.get('error')})"
        return f"file {ref.describe()} saved at {reply.data['path']}"

    def _show_prompt(self) -> None:
        if self._interactive and self.prompt and not self._stopping:
            self.output.write(self.prompt)
            self.output.flush()

    async def _close(self) -> None:
        self._stop_reading()
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.unsubscribe()

    # ------------------------------------------------------------------ input side

    def _start_reading(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            fd = self.input.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            fd, mode = -1, 0
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode):
            try:
                loop.add_reader(fd, self._on_readable, fd)
            except (OSError, ValueError, NotImplementedError):  # e.g. /dev/null cannot be polled
                pass
            else:
                self._reader_fd = fd
                return
        threading.Thread(target=self._read_in_thread, args=(loop,), name="console-input", daemon=True).start()

    def _on_readable(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        self._partial += chunk
        *lines, self._partial = self._partial.split(b"\n")
        for raw in lines:
            self._lines.put_nowait(raw.decode("utf-8", errors="replace"))
        if not chunk:  # end of input
            if self._partial:
                self._lines.put_nowait(self._partial.decode("utf-8", errors="replace"))
                self._partial = b""
            self._stop_reading()
            self._lines.put_nowait(None)

    def _stop_reading(self) -> None:
        fd, self._reader_fd = self._reader_fd, None
        if fd is not None:
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(fd)

    def _read_in_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        def put(line: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(self._lines.put_nowait, line)

        try:
            while not self._stopping and (line := self.input.readline()):
                if isinstance(line, bytes):
                    line = line.decode("utf-8", errors="replace")
                put(line.rstrip("\r\n"))
        except (OSError, ValueError) as exc:  # closed or unreadable stream: treat as end of input
            logger.debug("console input ended: %s", exc)
        put(None)


def _isatty(stream: IO[Any]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False
