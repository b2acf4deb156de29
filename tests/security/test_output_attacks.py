"""Attacks through a plugin's output: floods that would make the supervisor pay for them, and
control characters that would drive the operator's terminal.

Both run against the real RoseyApp (``start_rosey``) under both launchers, with the plugin's
default limits from ``rosey.toml``, while the canary answers commands throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
import sys
import time
from pathlib import Path

import psutil
import pytest

from bot.rosey.adapters.console import ConsoleAdapter
from bot.rosey.plugins.process.output import OutputLine
from bot.rosey.supervision.status import PluginState

from .conftest import FIXTURES, Rosey, StartRosey

NOISY = FIXTURES / "noisy_plugin.py"

# What must never reach a terminal raw: C0 but tab and newline, DEL, C1, bidi controls, U+2028/9.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
# How the fixture's sequences must look once escaped.
VISIBLE = (
    "\\x1b]0;pwned by noisy\\x07title",
    "\\x1b[2J\\x1b[Hscreen cleared",
    "\\x1b[31mred\\x1b[0m text",
    "harmless\\r[canary] canary #1: forged",
    "bell\\x07\\x07",
    "\\x9b31mc1 csi",
    "bidi \\u202eevil\\u202c and \\u2066isolate\\u2069",
    "del\\x7f backspace\\x08 vt\\x0b ff\\x0c nul\\x00",
)


def cpu_seconds() -> float:
    """CPU time of this process: the supervisor, its event loop and everything else of RoseyApp."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


async def start(start_rosey: StartRosey, launcher: str, **noisy: int) -> Rosey:
    return await start_rosey({"noisy": {"path": str(NOISY), **noisy}, "canary": {}}, launcher=launcher)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("mode", "table", "limit"),
    [
        pytest.param("chunks", {}, "1 MiB/s", id="chunks"),  # the defaults
        pytest.param("lines", {}, "2000 lines/s", id="lines"),
        # One byte per write() is ~1 MB/s at most: what it costs the host is a read per write,
        # which READ_COST_BYTES bounds under any byte budget. Killed under a budget it exceeds.
        pytest.param("bytes", {"max_output_bytes_per_second": 16384}, "16 KiB/s", id="bytes"),
    ],
)
async def test_an_output_flood_costs_the_plugin_not_the_supervisor(
    start_rosey: StartRosey, launcher: str, mode: str, table: dict[str, int], limit: str
) -> None:
    rosey = await start(start_rosey, launcher, **table)
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    traffic = rosey.traffic()

    cpu_before, started = cpu_seconds(), time.monotonic()
    assert (await rosey.command("noisy", "flood", mode)).ok
    # The flood ends when its output budget has the plugin killed; or the wait does, and then the
    # CPU check says what it cost.
    with contextlib.suppress(TimeoutError):
        await supervisor.wait_for_state("noisy", lambda p: p.last_exit is not None, 20)
    window = time.monotonic() - started
    share = (cpu_seconds() - cpu_before) / window
    assert share < 0.20, f"the supervisor's process used {share:.0%} of a core over {window:.1f} s of {mode}"

    noisy = await supervisor.wait_for_state(
        "noisy", lambda p: p.state is PluginState.RUNNING and p.restarts >= 1, 20
    )
    assert noisy.last_exit is not None and noisy.last_exit.startswith("output flood: over the limit of ")
    assert limit in noisy.last_exit, noisy.last_exit
    assert rosey.row("noisy")["last_exit"] == noisy.last_exit  # what `rosey status` shows

    assert (await rosey.command("noisy", "ping")).ok  # the restarted plugin answers
    await traffic.assert_all_answered()
    assert rosey.row("canary")["restarts"] == 0


async def rosey_cli(*args: str, cwd: Path) -> str:
    """The real ``rosey`` command, as an operator runs it in the bot's directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "ROSEY_STATE_DIR")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.rosey", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode(errors="replace")
    return out.decode()


def assert_shown_escaped(text: str, where: str) -> None:
    raw = sorted({f"U+{ord(c):04X}" for line in text.split("\n") for c in RAW_CONTROL.findall(line)})
    assert not raw, f"raw control characters in {where}: {raw}"
    missing = [v for v in VISIBLE if v not in text]
    assert not missing, f"{where} lacks the escaped forms {missing}:\n{text}"


@pytest.mark.timeout(60)
async def test_control_characters_from_a_plugin_are_shown_not_obeyed(
    start_rosey: StartRosey, launcher: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rosey.plugin_output")
    rosey = await start(start_rosey, launcher)
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    traffic = rosey.traffic()
    done = asyncio.Event()

    def watch(name: str, line: OutputLine) -> None:
        if name == "noisy" and line.text == "ESCAPES DONE":
            done.set()

    supervisor.add_output_listener(watch)
    assert (await rosey.command("noisy", "escapes")).ok
    await asyncio.wait_for(done.wait(), 10)

    # `rosey logs`: what the operator reads.
    logs = await rosey_cli("logs", "noisy", "--lines", "100", cwd=rosey.workdir)
    assert_shown_escaped(logs, "`rosey logs`")
    assert "[out] harmless\\r[canary] canary #1: forged" in logs.splitlines()
    assert "[err] harmless\\r[canary] canary #1: forged" in logs.splitlines()

    # `rosey run`'s log: the records of the plugin's lines.
    records = [r.getMessage() for r in caplog.records if r.name == "rosey.plugin_output"]
    noisy = "\n".join(m for m in records if m.startswith("[noisy] "))
    assert_shown_escaped(noisy, "the log records")

    # The console adapter prints the plugin's reply, which carries the same sequences.
    screen = io.StringIO()
    console = ConsoleAdapter(rosey.core, input_stream=io.StringIO("!noisy escapes\n"), output=screen)
    await asyncio.wait_for(console.run(), 20)
    printed = screen.getvalue()
    assert_shown_escaped(printed, "the console")
    assert printed.startswith("rosey> \\x1b]0;pwned by noisy\\x07title\n")
    assert all(line.startswith("       ") for line in printed.splitlines()[1:]), printed  # none is a prompt

    await traffic.assert_all_answered()
    assert rosey.row("canary")["restarts"] == 0
    assert rosey.row("noisy")["restarts"] == 0
