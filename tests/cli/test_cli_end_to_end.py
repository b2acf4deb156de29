"""The README's promise, as a user would live it: `rosey run` in an empty directory, then
`rosey send echo hello world` from another terminal, `rosey status`, and a clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.processes import kill_quietly, wait_pid_gone

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(90)]

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


async def start_run(workdir: Path, *extra: str) -> RunningRosey:
    with (workdir / "rosey-run.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *ROSEY, "run", "--no-chat", *extra,
            cwd=workdir, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log, env=user_env(),
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
        raise AssertionError(f"rosey run did not get ready: {line!r}\n{(workdir / 'rosey-run.log').read_text()}")
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


async def test_send_echo_in_a_fresh_directory(running: RunningRosey) -> None:
    assert "echo" in running.ready_line
    code, out, err = await rosey("send", "echo", "hello", "world", cwd=running.workdir)
    assert (code, out.strip()) == (0, "🔊 Echo #1: hello world"), err
    code, out, _ = await rosey("send", "echo", "again", "--json", cwd=running.workdir)
    assert code == 0
    assert json.loads(out)["message"] == "🔊 Echo #2: again"


async def test_unknown_plugin_and_status(running: RunningRosey) -> None:
    code, _, err = await rosey("send", "nosuchplugin", "x", cwd=running.workdir)
    assert code == 2
    assert "unknown command" in err and "echo" in err
    status = await running.status()
    (row,) = status["plugins"]
    assert row["name"] == "echo" and row["state"] == "running" and row["pid"]
    for key in ("restarts", "cpu_percent", "memory_mb", "uptime_seconds", "last_exit"):
        assert key in row


async def test_sigterm_stops_everything_and_exits_zero(running: RunningRosey) -> None:
    status = await running.status()
    plugin_pid = status["plugins"][0]["pid"]
    nats_pid = status["nats"]["pid"]
    running.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(running.proc.wait(), 15) == 0
    assert await wait_pid_gone(plugin_pid, 5)
    assert await wait_pid_gone(nats_pid, 5)
    assert not (running.workdir / ".rosey" / "runtime.json").exists()


async def test_sigkill_leaves_no_process_behind(running: RunningRosey) -> None:
    status = await running.status()
    pids = [status["plugins"][0]["pid"], status["nats"]["pid"]]
    running.proc.kill()
    await running.proc.wait()
    try:
        for pid in pids:
            assert await wait_pid_gone(pid, 2.0), f"pid {pid} outlived a SIGKILLed rosey run"
    finally:
        for pid in pids:
            kill_quietly(pid)
    code, _, err = await rosey("send", "echo", "hi", cwd=running.workdir)
    assert code == 2 and "not running" in err


async def test_commands_without_a_running_bot(tmp_path: Path) -> None:
    code, _, err = await rosey("send", "echo", "hi", cwd=tmp_path)
    assert code == 2 and "not running" in err
    code, out, _ = await rosey("plugins", "list", "--json", cwd=tmp_path)
    assert code == 0
    assert [p["name"] for p in json.loads(out)["plugins"]] == ["echo"]


async def test_bad_config_names_file_key_and_reason(tmp_path: Path) -> None:
    (tmp_path / "rosey.toml").write_text("[plugins.echo]\nmax_memory_mb = -3\n")
    code, _, err = await rosey("run", "--no-chat", cwd=tmp_path)
    assert code == 2
    assert "rosey.toml" in err and "plugins.echo.max_memory_mb" in err


async def test_help_explains_every_command(tmp_path: Path) -> None:
    code, out, _ = await rosey("--help", cwd=tmp_path)
    assert code == 0
    for command in ("run", "send", "status", "plugins", "logs", "start", "stop", "restart", "doctor"):
        assert command in out
    code, out, _ = await rosey("send", "--help", cwd=tmp_path)
    assert code == 0 and "--timeout" in out and "Exit 0" in out
