"""Single key presses from a terminal, read on the event loop without blocking it.

:func:`read_keys` puts the terminal in cbreak mode (each key is delivered at once, not echoed;
Ctrl-C still sends SIGINT) and watches it with ``loop.add_reader``: every key is handed, as a
one-character string, to a callback. On leaving, however it is left (a key, a signal, an
exception), the reader is removed and the terminal's previous settings are restored. When the
input is not a terminal (a pipe, /dev/null) nothing is read and nothing is changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["END_OF_INPUT", "read_keys"]

#: Handed on when the terminal is gone (end of input, or the read failed).
END_OF_INPUT = "\x04"


@contextlib.contextmanager
def read_keys(stream: TextIO, on_key: Callable[[str], None]) -> Iterator[bool]:
    """Call ``on_key`` with each key typed on ``stream`` while inside (on the running loop);
    yields whether keys are read at all."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # no real file behind it (pytest's capture)
        fd = -1
    if fd < 0 or not os.isatty(fd):
        yield False
        return
    loop = asyncio.get_running_loop()
    saved = termios.tcgetattr(fd)

    def on_readable() -> None:
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if not data:  # the terminal hung up: nothing will ever come again
            loop.remove_reader(fd)
            on_key(END_OF_INPUT)
            return
        for key in data.decode("utf-8", errors="replace"):
            on_key(key)

    tty.setcbreak(fd, termios.TCSANOW)
    try:
        loop.add_reader(fd, on_readable)
        try:
            yield True
        finally:
            loop.remove_reader(fd)
    finally:
        # TCSADRAIN: what was written (the last frame, leaving the alternate screen) goes out first.
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
