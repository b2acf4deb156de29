"""The README's promise, as a user would live it: `rosey run` in an empty directory, then
`rosey send echo hello world` from another terminal, `rosey status`, and a clean stop."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from tests.cli.conftest import RunningRosey, rosey
from tests.processes import kill_quietly, wait_pid_gone

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(90)]


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
