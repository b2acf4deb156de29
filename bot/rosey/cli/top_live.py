"""``rosey top``: the running bot's status, redrawn in place until ``q``.

One connection to the bot's bus, one status request per interval (the control service's
``status``, the same record ``rosey status`` prints). Three sources feed one queue, read by one
loop that redraws after each: the poller (a fresh :class:`RoseyStatus`, or why the request
failed), the terminal's keys (:func:`~bot.rosey.cli.keys.read_keys`, on the event loop, never
blocking it) and signals (Ctrl-C, SIGTERM and a hang-up quit; a resize redraws at the new size;
Ctrl-Z gives the terminal back before the process stops, and ``fg`` draws again).
The frame itself is :func:`bot.rosey.cli.top.render`; rich's ``Live`` shows it on the terminal's
alternate screen, which is left, with the cursor shown and the terminal's modes restored, on
every way out (``q``, a signal, the bot stopping, an error).

Why rich: it is widely used and maintained, typed, pure Python with three small dependencies,
and its ``Live`` + ``Table`` are exactly a refreshing table; textual is a whole application
framework (its own event loop, widgets, CSS) for what is here one table and five keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from enum import Enum

import psutil
from rich.console import Console, RenderableType
from rich.live import Live

from bot.rosey.cli.client import ask, connect
from bot.rosey.cli.keys import END_OF_INPUT, read_keys
from bot.rosey.cli.top import QUIT_KEYS, SORT_KEYS, SortKey, render
from bot.rosey.config import RoseyConfig
from bot.rosey.core.event_bus import EventBus
from bot.rosey.errors import CliError, NotRunning, RoseyError
from bot.rosey.runtime import RuntimeInfo, read_runtime
from bot.rosey.supervision.status import RoseyStatus

__all__ = ["run_top"]

_QUIT = "\x03"  # what a quitting signal puts on the queue (Ctrl-C's character)
_REDRAW = "\x0c"  # what a resize puts on the queue; Ctrl-L typed redraws too, as in other tools
_SUSPEND = "\x1a"  # what Ctrl-Z (SIGTSTP) puts on the queue
_PIPE_WIDTH = 10_000  # --once into a pipe or file: no line is cut at 80 columns


async def run_top(config: RoseyConfig, *, interval: float, sort: SortKey, once: bool) -> int:
    """``rosey top``: the live view (or one frame with ``once``); returns the exit code."""
    console = Console()
    if not once and not console.is_terminal:
        raise CliError(
            "rosey top draws on a terminal; in scripts use `rosey top --once` or `rosey status --json`"
        )
    info = read_runtime(config.state_dir)
    bus = await connect(info)
    try:
        status = await _status(bus, info, timeout=10.0)
        if once:
            if not console.is_terminal:
                console = Console(width=_PIPE_WIDTH)
            console.print(render(status, sort=sort, width=console.width if console.is_terminal else None))
            return 0
        await _live(console, bus, info, status, interval=interval, sort=sort)
        return 0
    finally:
        await bus.disconnect()


async def _status(bus: EventBus, info: RuntimeInfo, *, timeout: float) -> RoseyStatus:
    # Without the plugins' resource history: rosey top draws no plot, and encoding 100 plugins'
    # history is ~25 ms of the bot's event loop per refresh.
    data = await ask(bus, info, "status", {"history": False}, timeout=timeout)
    try:
        return RoseyStatus.from_dict(data)
    except ValueError as exc:  # a state this version does not know: a newer bot
        raise CliError(f"Rosey (pid {info.pid}) sent a status this rosey cannot read: {exc}") from exc


async def _poll(bus: EventBus, info: RuntimeInfo, interval: float, put: asyncio.Queue[_Input]) -> None:
    """A status every ``interval`` seconds (the first after one interval), or why there is none."""
    while True:
        await asyncio.sleep(interval)
        try:
            put.put_nowait(await _status(bus, info, timeout=max(2.0, 3 * interval)))
        except RoseyError as exc:
            if not _alive(info.pid):
                put.put_nowait(NotRunning(f"Rosey (pid {info.pid}) has stopped"))
                return
            put.put_nowait(exc)


def _alive(pid: int) -> bool:
    """Whether the bot's process still runs (an exited one its parent has not reaped does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


_Input = str | RoseyStatus | RoseyError


class _Action(Enum):
    REDRAW = "redraw"
    NOTHING = "nothing"
    SUSPEND = "suspend"
    QUIT = "quit"


class _View:
    """What is on the screen: the last status, the order, why it may be stale."""

    def __init__(self, status: RoseyStatus, *, sort: SortKey, interval: float) -> None:
        self.status = status
        self.sort = sort
        self.interval = interval
        self.notice: str | None = None
        self.fetched = time.strftime("%H:%M:%S")

    def frame(self, width: int) -> RenderableType:
        return render(self.status, sort=self.sort, notice=self.notice, interval=self.interval, width=width)

    def take(self, item: _Input) -> _Action:
        """Apply one input; raises NotRunning when the bot has stopped."""
        if isinstance(item, RoseyStatus):
            self.status, self.notice, self.fetched = item, None, time.strftime("%H:%M:%S")
        elif isinstance(item, NotRunning):
            raise item
        elif isinstance(item, RoseyError):
            self.notice = f"{item} (the table is from {self.fetched})"
        elif item in QUIT_KEYS or item in (_QUIT, END_OF_INPUT):
            return _Action.QUIT
        elif item == _SUSPEND:
            return _Action.SUSPEND
        elif item in SORT_KEYS:
            self.sort = SORT_KEYS[item]
        elif item != _REDRAW:
            return _Action.NOTHING  # a key that means nothing here
        return _Action.REDRAW


async def _live(
    console: Console,
    bus: EventBus,
    info: RuntimeInfo,
    status: RoseyStatus,
    *,
    interval: float,
    sort: SortKey,
) -> None:
    loop = asyncio.get_running_loop()
    inputs: asyncio.Queue[_Input] = asyncio.Queue()
    view = _View(status, sort=sort, interval=interval)
    handled: list[signal.Signals] = []
    poller = asyncio.create_task(_poll(bus, info, interval, inputs))
    try:
        for sig, what in (
            (signal.SIGINT, _QUIT),
            (signal.SIGTERM, _QUIT),
            (signal.SIGHUP, _QUIT),
            (signal.SIGWINCH, _REDRAW),
            (signal.SIGTSTP, _SUSPEND),
        ):
            loop.add_signal_handler(sig, inputs.put_nowait, what)
            handled.append(sig)
        while True:
            with (
                read_keys(sys.stdin, inputs.put_nowait),
                Live(
                    view.frame(console.width),
                    console=console,
                    screen=True,
                    auto_refresh=False,  # redrawn here, when something changed; no thread of rich's
                    redirect_stdout=False,
                    redirect_stderr=False,
                ) as live,
            ):
                while (action := view.take(await inputs.get())) not in (_Action.QUIT, _Action.SUSPEND):
                    if action is _Action.REDRAW:
                        live.update(view.frame(console.width), refresh=True)
            if action is _Action.QUIT:
                return
            # Ctrl-Z: the screen and the terminal's modes are given back (above), then this process
            # stops as the default SIGTSTP would; `fg` (SIGCONT) continues here and draws again.
            os.kill(os.getpid(), signal.SIGSTOP)
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        for sig in handled:
            loop.remove_signal_handler(sig)
