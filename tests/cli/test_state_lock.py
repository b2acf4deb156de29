"""One bot per state directory: a second `rosey run` refuses in one line; a killed bot's lock
does not block the next start."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from .conftest import ROSEY, RunningRosey, rosey, start_run, user_env

pytestmark = pytest.mark.timeout(60)


async def test_a_second_run_in_the_same_directory_refuses_and_leaves_the_first_alone(
    running: RunningRosey,
) -> None:
    runtime = running.workdir / ".rosey" / "runtime.json"
    before = runtime.read_text()
    second = await asyncio.create_subprocess_exec(
        *ROSEY, "run", "--no-chat", cwd=running.workdir, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=user_env(),
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(second.communicate(), 30)
    finally:
        if second.returncode is None:  # it started after all: never leave it running
            second.kill()
            await second.wait()
    assert second.returncode == 2, (out, err)
    assert f"Rosey is already running here (pid {running.proc.pid}, started " in err.decode(), err
    assert b"Rosey ready" not in out
    # The first bot is untouched: same runtime file, still answering.
    assert runtime.read_text() == before
    assert json.loads(before)["pid"] == running.proc.pid
    code, answer, errors = await rosey("send", "echo", "still", "here", cwd=running.workdir)
    assert code == 0 and answer.strip().endswith("still here"), (answer, errors)


async def test_a_killed_bots_lock_does_not_block_a_new_start(running: RunningRosey) -> None:
    running.proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(running.proc.wait(), 10)
    again = await start_run(running.workdir)
    try:
        code, answer, errors = await rosey("send", "echo", "back", cwd=running.workdir)
        assert code == 0 and answer.strip().endswith("back"), (answer, errors)
    finally:
        again.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(again.proc.wait(), 20) == 0
