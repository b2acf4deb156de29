"""Noticing, inside a plugin process, a command that blocks the event loop, and saying where.

One ``time.sleep(5)`` in ``handle_command`` stops every other command of the plugin, and its
answers to the supervisor's liveness pings, for five seconds; nothing else tells the author which
line did it. :class:`LoopWatch` does, in one hint (:mod:`bot.rosey.plugins.hints`) per place:

    rosey hint: /srv/bot/plugins/slow.py:14 (in handle_command) blocked the event loop for over
    1 s: `time.sleep(5)` stops every other command of this plugin, and its liveness pings (~8 s
    of them and it is killed); use `await asyncio.sleep(...)` instead (see
    docs/plugins/PLUGIN-DEVELOPMENT.md#concurrency)

How, without a thread (a plugin may be limited to one, and the zygote's children start with
one): while a command is in flight, a callback on the loop re-arms a one-shot real-time timer
(``setitimer``) every 0.1 s for 1.1 s. A loop that turns keeps pushing the timer back, so it
never fires. A loop that has not run that callback for over a second gets ``SIGALRM``, whose
Python handler runs on the loop's own thread at the next bytecode (a ``time.sleep`` is
interrupted and resumed, PEP 475) with the blocked frame in hand: the innermost frame of the
plugin's own code is the place. Idle plugins arm nothing. The timer only ever fires on a loop
that is already blocked, so C libraries never see an interrupted call otherwise, and the handler
is installed with ``SA_RESTART``.

It stands aside where it cannot work without side effects: off the main thread (signal handlers
are the main thread's), and when the plugin has a ``SIGALRM`` handler of its own (it is then
never armed again). The hint goes to the plugin's log (stderr) and, through ``on_hint``, on the
plugin's ``rosey.plugins.<name>.hint`` event once the loop turns again.
"""

from __future__ import annotations

import asyncio
import linecache
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bot.rosey.plugins import hints

__all__ = ["BLOCK_SECONDS", "LoopWatch", "blocked_loop_hint"]

logger = logging.getLogger(__name__)

#: A loop blocked this long while a command is in flight gets a hint.
BLOCK_SECONDS = 1.0
#: How often a busy loop pushes the timer back (the timer is set to BLOCK_SECONDS + this).
_BEAT_SECONDS = 0.1

_ROSEY_DIR = str(Path(__file__).resolve().parents[1]) + os.sep
_STDLIB_DIR = str(Path(os.__file__).resolve().parent) + os.sep


def _fix(source: str) -> str:
    """What to write instead of the blocking line, from what it says."""
    if "time.sleep(" in source or source.startswith("sleep("):
        return "use `await asyncio.sleep(...)` instead"
    if "requests." in source or "urlopen(" in source or "urllib" in source:
        return "make HTTP requests with `await self.http...` (see docs/plugins/http.md)"
    return (
        "make it async (`await asyncio.sleep`, an async library), or move it off the loop with "
        "`await asyncio.to_thread(fn, ...)` / `loop.run_in_executor(None, fn)`"
    )


def blocked_loop_hint(file: str, line: int, function: str, source: str) -> str:
    """The hint for a loop blocked at ``file:line`` (in ``function``, whose text there is ``source``)."""
    what = f"`{source}`" if source else "it"
    return (
        f"{file}:{line} (in {function}) blocked the event loop for over {BLOCK_SECONDS:g} s: {what} "
        "stops every other command of this plugin, and its liveness pings (~8 s of them and it is "
        f"killed); {_fix(source)} (see {hints.DOCS}#concurrency)"
    )


class LoopWatch:
    """Watches one plugin's event loop while its commands run (see the module docstring).

    ``plugin_dir``: the directory of the plugin's code, whose frames are preferred as the place;
    ``on_hint(hint)`` is called on the loop once it turns again after a hint.
    """

    def __init__(self, plugin_dir: str | None, on_hint: Callable[[hints.Hint], Any] | None = None) -> None:
        self._plugin_dir = plugin_dir.rstrip(os.sep) + os.sep if plugin_dir else None
        self._on_hint = on_hint
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = 0
        self._beat: asyncio.TimerHandle | None = None
        self._told: set[tuple[str, int]] = set()
        self._previous_handler: Any = None

    @property
    def active(self) -> bool:
        return self._loop is not None

    def start(self) -> bool:
        """Watch the running loop from now on; False (and nothing done) where it cannot."""
        if self._loop is not None:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
            return False  # the plugin's own SIGALRM: leave it alone
        self._previous_handler = signal.signal(signal.SIGALRM, self._on_alarm)
        signal.siginterrupt(signal.SIGALRM, False)  # SA_RESTART: interrupted reads resume in the kernel
        self._loop = asyncio.get_running_loop()
        return True

    def stop(self) -> None:
        if self._loop is None:
            return
        self._disarm()
        if signal.getsignal(signal.SIGALRM) == self._on_alarm:
            signal.signal(signal.SIGALRM, self._previous_handler)
        self._loop = None

    def command_started(self) -> None:
        self._busy += 1
        if self._beat is None and self._loop is not None:
            self._rearm()

    def command_finished(self) -> None:
        # Nothing to undo here: the next beat sees the loop idle and disarms (no syscall per command).
        self._busy -= 1

    def _rearm(self) -> None:
        self._beat = None
        if self._busy <= 0 or self._loop is None:
            self._disarm()
            return
        if signal.getsignal(signal.SIGALRM) != self._on_alarm:
            self._disarm()
            return  # the plugin installed its own handler since: stand aside for good
        signal.setitimer(signal.ITIMER_REAL, BLOCK_SECONDS + _BEAT_SECONDS)
        self._beat = self._loop.call_later(_BEAT_SECONDS, self._rearm)

    def _disarm(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if signal.getsignal(signal.SIGALRM) == self._on_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        """The loop has not turned for over BLOCK_SECONDS: say where it is stuck (once per place)."""
        place = self._place(frame)
        if place is None:
            return  # stuck in Rosey's or Python's own code: no line of the plugin to name
        key = (place.f_code.co_filename, place.f_lineno)
        if key in self._told:
            return
        self._told.add(key)
        file, line = key
        source = linecache.getline(file, line).split("  #", 1)[0].strip()  # without a trailing comment
        message = blocked_loop_hint(file, line, place.f_code.co_name, source)
        # The log is thread-safe and re-entrant; the plugin's handlers format it as its other lines.
        logger.warning("%s%s", hints.HINT_PREFIX, message)
        hint = hints.Hint(kind=hints.HintKind.BLOCKED_LOOP, file=file, line=line, message=message)
        if self._on_hint is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_hint, hint)

    def _place(self, frame: FrameType | None) -> FrameType | None:
        """The innermost frame of the plugin's code; else of any code but Rosey's and the stdlib's."""
        fallback: FrameType | None = None
        while frame is not None:
            filename = frame.f_code.co_filename
            if self._plugin_dir is not None and filename.startswith(self._plugin_dir):
                return frame
            if fallback is None and not filename.startswith((_ROSEY_DIR, _STDLIB_DIR, "<")):
                fallback = frame
            frame = frame.f_back
        return fallback
