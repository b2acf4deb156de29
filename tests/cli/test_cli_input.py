"""Input errors and help, as a user meets them: one line, exit code 2, no traceback; options where
users put them; every command and option explains itself; `rosey shutdown` stops a running bot."""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path

import pytest

from bot.rosey.cli.parser import build_parser

from .conftest import RunningRosey, rosey

pytestmark = pytest.mark.timeout(60)


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "soon"])
async def test_a_bad_timeout_is_one_line_and_exit_2(tmp_path: Path, value: str) -> None:
    code, out, err = await rosey("send", "echo", "hi", "--timeout", value, cwd=tmp_path)
    line = _one_line_error(code, err)
    assert "--timeout" in line and "rosey send --help" in line, line
    assert out == ""


async def test_an_unknown_option_or_command_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (("send", "--bogus"), ("frobnicate",), ("logs",), ("plugins",)):
        code, _, err = await rosey(*args, cwd=tmp_path)
        _one_line_error(code, err)


async def test_options_after_positional_arguments_work(running: RunningRosey) -> None:
    code, out, err = await rosey("send", "echo", "--timeout", "5", "hi", "there", cwd=running.workdir)
    assert code == 0, err
    assert out.strip().endswith("hi there"), out
    # After `--`, everything is an argument, even what looks like an option.
    code, out, err = await rosey("send", "echo", "--", "--timeout", "5", cwd=running.workdir)
    assert code == 0, err
    assert out.strip().endswith("--timeout 5"), out


async def test_arguments_over_the_message_limit_are_one_line_and_exit_2(running: RunningRosey) -> None:
    chunk = "x" * 100_000  # one argv string may hold 128 KiB, all of them 2 MiB: 11 pass NATS's 1 MB
    code, out, err = await rosey("send", "echo", *([chunk] * 11), cwd=running.workdir)
    line = _one_line_error(code, err)
    assert re.fullmatch(r"command too large: 1\.\d\d MB > 1 MB \(the message limit\)", line), line
    assert out == ""


def _commands(
    parser: argparse.ArgumentParser, prefix: str = "rosey"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{prefix} {name}", sub))
                found.extend(_commands(sub, f"{prefix} {name}"))
    return found


def test_every_command_and_option_explains_itself() -> None:
    commands = _commands(build_parser())
    assert {"rosey run", "rosey send", "rosey shutdown", "rosey plugins list"} <= {n for n, _ in commands}
    for name, parser in commands:
        assert parser.description, f"{name} has no description"
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest} has no help"


async def test_shutdown_stops_the_running_bot_cleanly(running: RunningRosey) -> None:
    code, out, err = await rosey("shutdown", cwd=running.workdir)
    assert code == 0, err
    assert out.startswith(f"Rosey (pid {running.proc.pid}) stopped."), out
    assert await asyncio.wait_for(running.proc.wait(), 10) == 0  # the clean path, as after Ctrl-C
    assert not (running.workdir / ".rosey" / "runtime.json").exists()
    code, _, err = await rosey("status", cwd=running.workdir)
    assert code == 2 and "not running" in err, err
