"""`rosey top`: the frame as a pure function of a status, one frame against a real bot, and the
live view on a pseudo-terminal (redrawn after a plugin is SIGKILLed and restarted, quit on `q`)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import re
import signal
import struct
import termios
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bot.rosey.cli.top import COLUMNS, SortKey, format_duration, format_latency, format_memory, render
from bot.rosey.supervision.status import (
    LauncherStatus,
    NatsStatus,
    PluginState,
    PluginStatus,
    RoseyStatus,
    WatchdogStatus,
)
from tests.cli.conftest import ROSEY, RunningRosey, rosey, start_run, user_env

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(90)]

# ---------------------------------------------------------------------- the frame, pure


def _status(*plugins: PluginStatus) -> RoseyStatus:
    return RoseyStatus(
        pid=4242,
        nats=NatsStatus(url="nats://rosey_core:s3cret@127.0.0.1:4222", embedded=True),
        uptime_seconds=3725.0,
        plugins=plugins,
        launcher=LauncherStatus(kind="zygote"),
        sandbox_mode="best-effort",
        sandbox_support={},
        watchdog=WatchdogStatus(),
    )


ECHO = PluginStatus(
    name="echo",
    state=PluginState.RUNNING,
    pid=1001,
    restarts=2,
    cpu_percent=1.5,
    memory_mb=25.63,
    uptime_seconds=75.0,
    commands=12,
    command_errors=1,
    latency_ms_p50=0.84,
    sandbox="rlimits,landlock-fs",
    sandbox_source="launcher",
    last_exit="killed by SIGKILL",
)
IRC = PluginStatus(
    name="irc",
    kind="adapter",
    state=PluginState.RUNNING,
    pid=1002,
    cpu_percent=7.25,
    memory_mb=2048.0,
    uptime_seconds=100_000.0,
    latency_ms_p50=12.3,
    denied_by_nats=3,
    last_denied="publish to rosey.commands.x.execute",
    sandbox="rlimits,landlock-fs",
    sandbox_source="launcher",
)
BROKEN = PluginStatus(
    name="broken",
    state=PluginState.FAILED,
    restarts=5,
    last_exit="exit code 1",
    # What a plugin chose to print: markup and a control sequence, shown as text, never obeyed.
    reason="crashed 5 times in a row: [bold red]No module named x\x1b[2J",
)
STATUS = _status(ECHO, IRC, BROKEN)


def _text(status: RoseyStatus, *, width: int = 200, **options: Any) -> str:
    """The frame as plain text, as printed to a file."""
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False)
    console.print(render(status, **options))
    return out.getvalue()


def _row(text: str, name: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return re.split(r" {2,}", line.strip())


def test_the_frame_has_every_column_with_units() -> None:
    text = _text(STATUS)
    header, titles = text.splitlines()[:2]
    assert header == (
        "rosey pid 4242  up 1h02m  2/3 running  NATS nats://***@127.0.0.1:4222 (embedded)"
        "  sandbox best-effort: rlimits,landlock-fs"
    )
    assert "s3cret" not in text
    assert re.split(r" {2,}", titles.strip()) == [c + (" ▼" if c == "CPU %" else "") for c in COLUMNS]
    assert _row(text, "echo") == [
        "echo", "plugin", "running", "1001", "2", "1.5", "25.6 MB", "1m15s", "12", "1", "840 µs", "-",
        "killed by SIGKILL",
    ]  # fmt: skip
    assert _row(text, "irc") == [
        "irc", "adapter", "running", "1002", "0", "7.2", "2.00 GB", "1d03h", "-", "-", "12.3 ms", "3", "-",
    ]  # fmt: skip
    # Not running: no pid, no readings, no uptime; its restarts and last exit stay.
    assert _row(text, "broken") == ["broken", "plugin", "failed", "-", "5", "-", "-", "-", "-", "-", "-", "-",
                                    "exit code 1"]  # fmt: skip
    assert "q quit" not in text  # keys only in the live view


def test_a_failed_plugins_reason_is_shown_as_text() -> None:
    text = _text(STATUS)
    assert "broken: crashed 5 times in a row: [bold red]No module named x\\x1b[2J" in text
    assert "\x1b" not in text
    assert "irc: last denied by NATS: publish to rosey.commands.x.execute" in text
    out = io.StringIO()  # with colours on, the only escapes are rich's own styles
    Console(file=out, width=200, force_terminal=True, color_system="standard").print(render(STATUS))
    assert "\x1b[2J" not in out.getvalue() and "[bold red]No module" in out.getvalue()


@pytest.mark.parametrize(
    ("sort", "order", "marked"),
    [
        (SortKey.CPU, ["irc", "echo", "broken"], "CPU % ▼"),
        (SortKey.MEMORY, ["irc", "echo", "broken"], "MEMORY ▼"),
        (SortKey.NAME, ["broken", "echo", "irc"], "NAME ▲"),
        (SortKey.RESTARTS, ["broken", "echo", "irc"], "RESTARTS ▼"),
    ],
)
def test_rows_are_sorted_by_the_key(sort: SortKey, order: list[str], marked: str) -> None:
    busy = PluginStatus(name="aaa", state=PluginState.RUNNING, pid=7, cpu_percent=1.0, memory_mb=30.0)
    text = _text(_status(ECHO, IRC, BROKEN), sort=sort)
    names = [line.split()[0] for line in text.splitlines()[3:6]]
    assert names == order
    assert marked in text.splitlines()[1]
    # Ties and plugins without readings: by name, so rows do not jump between frames.
    text = _text(_status(BROKEN, busy, ECHO), sort=SortKey.CPU)
    assert [line.split()[0] for line in text.splitlines()[3:6]] == ["echo", "aaa", "broken"]


def test_a_narrow_terminal_drops_the_least_needed_columns() -> None:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(render(STATUS, interval=1.0, width=80))
    text = out.getvalue()
    titles = next(line for line in text.splitlines() if line.startswith("NAME"))
    for kept in ("NAME", "STATE", "RESTARTS", "CPU %", "MEMORY", "LAST EXIT"):
        assert kept in titles
    for dropped in ("KIND", "DENIED"):
        assert dropped not in titles
    assert max(len(line) for line in text.splitlines() if "running" in line) <= 80
    assert _row(text, "echo")[:2] == ["echo", "running"]
    assert re.search(r"every 1 s  \d columns hidden\n", text)
    assert "q quit" in text and "every 1 s" in text


def test_units() -> None:
    assert [format_duration(s) for s in (0, 59.9, 61, 3600, 86_399, 90_000)] == [
        "0s", "59s", "1m01s", "1h00m", "23h59m", "1d01h",
    ]  # fmt: skip
    assert [format_memory(m) for m in (0.04, 25.63, 1536)] == ["0.0 MB", "25.6 MB", "1.50 GB"]
    assert [format_latency(ms) for ms in (0.412, 12.34, 1250)] == ["412 µs", "12.3 ms", "1.25 s"]


def test_a_stale_frame_says_so() -> None:
    text = _text(STATUS, notice="Rosey (pid 4242) did not answer (the table is from 12:00:00)")
    assert text.splitlines()[1] == "Rosey (pid 4242) did not answer (the table is from 12:00:00)"


# ---------------------------------------------------------------------- against a real bot

CHATTY = """
from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class Chatty(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "chatty"

    async def handle_command(self, event: Event):
        await self.publish_result({"message": "ok"}, event.correlation_id)


if __name__ == "__main__":
    run_plugin(Chatty)
"""

BROKEN_PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin
import no_such_module_here


class Broken(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "broken"

    async def handle_command(self, event):
        pass
"""


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[RunningRosey]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "chatty.py").write_text(CHATTY)
    (plugins / "broken.py").write_text(BROKEN_PLUGIN)
    instance = await start_run(tmp_path)
    try:
        yield instance
    finally:
        if instance.proc.returncode is None:
            instance.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(instance.proc.wait(), 20)


async def test_once_prints_one_frame_of_the_running_bot(bot: RunningRosey) -> None:
    code, out, err = await rosey("top", "--once", "--sort", "name", cwd=bot.workdir)
    assert code == 0, err
    lines = out.splitlines()
    assert re.match(rf"rosey pid {bot.proc.pid}  up \d+s  1/2 running  NATS nats://127\.0\.0\.1:", lines[0])
    assert lines[1].split() == [*" ".join(COLUMNS).replace("NAME", "NAME ▲").split()]
    broken, chatty = _row(out, "broken"), _row(out, "chatty")
    assert broken[:4] == ["broken", "plugin", "failed", "-"]
    assert chatty[:3] == ["chatty", "plugin", "running"] and chatty[3].isdigit()
    assert chatty[6].endswith(" MB")
    assert any(line.startswith("broken: ") and "no_such_module_here" in line for line in lines)
    assert "q quit" not in out


async def test_no_bot_running_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, out, err = await rosey("top", "--once", cwd=tmp_path)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "Rosey is not running here" in err, err
    # The live view needs a terminal: without one it says what to use instead.
    code, out, err = await rosey("top", cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1 and "rosey top --once" in err, err


# ---------------------------------------------------------------------- live, on a pseudo-terminal

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>78])")


class Terminal:
    """The far side of a pseudo-terminal: what a program drew on it, as text without escapes."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.raw = bytearray()
        self.seen = 0  # text before this offset is not searched again
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the program closed its end
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.raw += data
        self._changed.set()

    @property
    def text(self) -> str:
        return _ANSI.sub("", self.raw.decode("utf-8", errors="replace"))

    async def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first match of ``pattern`` drawn after the previous expect's match."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = re.compile(pattern).search(self.text, self.seen)
                    if found:
                        self.seen = found.end()
                        return found
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            drawn = self.text[-3000:]
            raise AssertionError(f"{pattern!r} not drawn in {timeout} s; the last of it:\n{drawn}") from None

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.master)


@contextlib.contextmanager
def pseudo_terminal(rows: int = 40, columns: int = 200) -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def _take_terminal() -> None:
    """In the child, after setsid(): its stdin becomes its controlling terminal, as in a shell,
    so Ctrl-C typed on it is a SIGINT from the terminal's line discipline."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _top_on_terminal(workdir: Path, slave: int, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in user_env().items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    return await asyncio.create_subprocess_exec(
        *ROSEY, "top", *args, cwd=workdir, stdin=slave, stdout=slave, stderr=slave,
        env={**env, "TERM": "xterm-256color"}, start_new_session=True, preexec_fn=_take_terminal,
    )  # fmt: skip


def _row_pattern(name: str) -> str:
    """A drawn row: name, kind, state, then the pid and restarts captured."""
    return rf"{name} +plugin +running +(\d+) +(\d+) "


async def test_live_view_redraws_after_a_restart_and_quits_on_q(bot: RunningRosey) -> None:
    with pseudo_terminal() as (master, slave):
        before = termios.tcgetattr(slave)
        terminal = Terminal(master)
        proc = await _top_on_terminal(bot.workdir, slave, "--interval", "0.2")
        try:
            first = await terminal.expect(_row_pattern("chatty"))
            pid, restarts = int(first[1]), int(first[2])
            assert restarts == 0
            assert "NAME" in terminal.text
            await terminal.expect(r"q quit  sort: c cpu m memory n name r restarts  every 0\.2 s")
            # In cbreak mode while it runs: each key counts at once, and is not echoed; Ctrl-C
            # still makes a SIGINT.
            lflag = termios.tcgetattr(slave)[3]
            assert not lflag & (termios.ICANON | termios.ECHO) and lflag & termios.ISIG

            os.kill(pid, signal.SIGKILL)
            again = await terminal.expect(_row_pattern("chatty") + r"[^\n]*killed by SIGKILL")
            while int(again[2]) != 1:  # a frame drawn before the new process got ready
                again = await terminal.expect(_row_pattern("chatty") + r"[^\n]*killed by SIGKILL")
            assert int(again[1]) != pid

            terminal.type("n")  # sort by name, live
            await terminal.expect(r"NAME ▲")
            terminal.type("q")
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            terminal.close()
        assert termios.tcgetattr(slave) == before  # cbreak undone
        assert _left_screen(bytes(terminal.raw))


def _left_screen(raw: bytes) -> bool:
    """The alternate screen was left after it was last entered, and the cursor shown again."""
    screen_left = raw.rindex(b"\x1b[?1049l") > raw.rindex(b"\x1b[?1049h")
    cursor_shown = raw.rindex(b"\x1b[?25h") > raw.rindex(b"\x1b[?25l")
    return screen_left and cursor_shown


async def _stopped(pid: int) -> None:
    """Returns once the child ``pid`` is stopped by a signal (waitid, leaving it waitable)."""
    await asyncio.to_thread(os.waitid, os.P_PID, pid, os.WSTOPPED | os.WNOWAIT)


async def test_live_view_resizes_suspends_and_quits_on_ctrl_c(bot: RunningRosey) -> None:
    with pseudo_terminal() as (master, slave):
        before = termios.tcgetattr(slave)
        terminal = Terminal(master)
        proc = await _top_on_terminal(bot.workdir, slave)
        try:
            await terminal.expect(_row_pattern("chatty"))
            # A narrower window (the kernel sends SIGWINCH): redrawn at once, without KIND.
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 90, 0, 0))
            await terminal.expect(r"chatty +running +\d+ +\d+ [^\n]*")
            await terminal.expect(r"every 1 s  \d columns hidden")

            terminal.type("\x1a")  # Ctrl-Z: the terminal is given back, then the process stops
            await asyncio.wait_for(_stopped(proc.pid), 10)
            assert termios.tcgetattr(slave) == before
            assert _left_screen(bytes(terminal.raw))
            proc.send_signal(signal.SIGCONT)  # `fg`: drawn again, in cbreak mode again
            await terminal.expect(r"chatty +running +\d+ +\d+ [^\n]*")
            assert not termios.tcgetattr(slave)[3] & termios.ICANON

            terminal.type("\x03")  # Ctrl-C: the terminal (its controlling one) sends SIGINT
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            terminal.close()
        assert termios.tcgetattr(slave) == before
        assert _left_screen(bytes(terminal.raw))


async def test_live_view_says_when_the_bot_stops(bot: RunningRosey) -> None:
    with pseudo_terminal() as (master, slave):
        before = termios.tcgetattr(slave)
        terminal = Terminal(master)
        proc = await _top_on_terminal(bot.workdir, slave, "--interval", "0.2")
        try:
            await terminal.expect(_row_pattern("chatty"))
            code, _, err = await rosey("shutdown", cwd=bot.workdir)
            assert code == 0, err
            await terminal.expect(rf"rosey: Rosey \(pid {bot.proc.pid}\) has stopped\r?\n")
            assert await asyncio.wait_for(proc.wait(), 10) == 2
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            terminal.close()
        assert termios.tcgetattr(slave) == before
        assert _left_screen(bytes(terminal.raw))


def test_the_sort_option_offers_every_sort_key() -> None:
    from bot.rosey.cli.parser import build_parser

    for key in SortKey:  # the parser lists them without importing rich; they must agree
        args = build_parser().parse_args(["top", "--sort", key.value, "-d", "2.5"])
        assert (SortKey(args.sort), args.interval, args.once) == (key, 2.5, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["top", "--sort", "pid"])
