"""Driving the real `rosey` command as a user would: subprocesses in a fresh directory."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

ROSEY = [sys.executable, "-m", "bot.rosey"]


def user_env() -> dict[str, str]:
    """The environment of a user's shell: none of the test suite's NATS/state redirections."""
    return {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "ROSEY_STATE_DIR")}


async def rosey(*args: str, cwd: Path, timeout: float = 30.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *ROSEY, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=user_env()
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class RunningRosey:
    def __init__(self, proc: asyncio.subprocess.Process, workdir: Path, ready_line: str) -> None:
        self.proc = proc
        self.workdir = workdir
        self.ready_line = ready_line

    async def status(self) -> dict:
        code, out, err = await rosey("status", "--json", cwd=self.workdir)
        assert code == 0, err
        return json.loads(out)


async def start_run(workdir: Path, *extra: str, env: Mapping[str, str] | None = None) -> RunningRosey:
    """`rosey run --no-chat` in ``workdir`` (``env``: variables set in its environment, on top of
    the user's); returns once it printed its ready line."""
    with (workdir / "rosey-run.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *ROSEY,
            "run",
            "--no-chat",
            *extra,
            cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env={**user_env(), **(env or {})},
        )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
    except TimeoutError:
        proc.kill()
        raise
    if not line.startswith(b"Rosey ready"):
        proc.kill()
        await proc.wait()
        raise AssertionError(
            f"rosey run did not get ready: {line!r}\n{(workdir / 'rosey-run.log').read_text()}"
        )
    return RunningRosey(proc, workdir, line.decode())


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[RunningRosey]:
    instance = await start_run(tmp_path)
    try:
        yield instance
    finally:
        if instance.proc.returncode is None:
            instance.proc.kill()
            await instance.proc.wait()
