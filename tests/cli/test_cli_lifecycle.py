"""Operating a running bot from another terminal: logs, stop/start/restart, status history,
and a plugin broken on purpose, with the error a user gets to read."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.conftest import ROSEY, RunningRosey, rosey, start_run, user_env

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(90)]

CHATTY = """
from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class Chatty(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "chatty"

    async def on_start(self):
        print("chatty is up")

    async def handle_command(self, event: Event):
        words = event.data.get("args", [])
        print("said:", " ".join(words), flush=True)
        if words == ["boom"]:
            raise RuntimeError("boom on purpose")
        await self.publish_result({"message": "ok"}, event.correlation_id)


if __name__ == "__main__":
    run_plugin(Chatty)
"""

BROKEN = """
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin
import no_such_module_here  # the mistake a user makes


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
    (plugins / "broken.py").write_text(BROKEN)
    instance = await start_run(tmp_path)
    try:
        yield instance
    finally:
        if instance.proc.returncode is None:
            instance.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(instance.proc.wait(), 20)


async def test_a_broken_plugin_is_reported_and_the_rest_runs(bot: RunningRosey) -> None:
    assert "1/2 plugins running (chatty)" in bot.ready_line
    log = (bot.workdir / "rosey-run.log").read_text()
    assert "plugin 'broken' failed to start" in log and "No module named 'no_such_module_here'" in log
    code, out, _ = await rosey("send", "chatty", "hi", cwd=bot.workdir)
    assert (code, out.strip()) == (0, "ok")
    code, _, err = await rosey("send", "chatty", "boom", cwd=bot.workdir)
    assert code == 1 and "boom on purpose" in err


async def test_logs_show_recent_lines_and_follow_streams_new_ones(bot: RunningRosey) -> None:
    await rosey("send", "chatty", "first", cwd=bot.workdir)
    code, out, _ = await rosey("logs", "chatty", "--lines", "50", cwd=bot.workdir)
    assert code == 0
    assert "[out] chatty is up" in out and "[out] said: first" in out

    follow = await asyncio.create_subprocess_exec(
        *ROSEY,
        "logs",
        "chatty",
        "--lines",
        "1",
        "--follow",
        cwd=bot.workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=user_env(),
    )
    assert follow.stdout is not None
    try:
        assert b"said: first" in await asyncio.wait_for(follow.stdout.readline(), 20)  # the --lines 1 backlog
        await rosey("send", "chatty", "second", cwd=bot.workdir)
        while True:
            line = await asyncio.wait_for(follow.stdout.readline(), 20)
            assert line, "rosey logs --follow ended early"
            if b"said: second" in line:
                break
        follow.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(follow.wait(), 10) == 0
    finally:
        if follow.returncode is None:
            follow.kill()
            await follow.wait()


async def test_stop_start_restart_from_another_terminal(bot: RunningRosey) -> None:
    first_pid = next(r for r in (await bot.status())["plugins"] if r["name"] == "chatty")["pid"]
    code, out, _ = await rosey("stop", "chatty", cwd=bot.workdir)
    assert (code, out.strip()) == (0, "chatty: stopped")
    code, _, err = await rosey("send", "chatty", "hi", cwd=bot.workdir)
    assert code == 2 and "not running" in err
    code, out, _ = await rosey("start", "chatty", cwd=bot.workdir)
    assert code == 0 and out.startswith("chatty: running (pid ")
    code, out, _ = await rosey("restart", "chatty", cwd=bot.workdir)
    assert code == 0 and "running" in out
    row = next(r for r in (await bot.status())["plugins"] if r["name"] == "chatty")
    assert row["pid"] not in (None, first_pid)
    code, _, err = await rosey("stop", "nosuch", cwd=bot.workdir)
    assert code == 2 and "no plugin named 'nosuch'" in err


async def test_status_json_has_history_and_protections(bot: RunningRosey) -> None:
    code, out, _ = await rosey("status", "--json", cwd=bot.workdir)
    assert code == 0
    status = json.loads(out)
    assert status["sandbox_mode"] == "best-effort"
    assert "landlock_abi" in json.dumps(status["sandbox_support"])
    chatty = next(r for r in status["plugins"] if r["name"] == "chatty")
    assert isinstance(chatty["history"], list)
    broken = next(r for r in status["plugins"] if r["name"] == "broken")
    assert broken["state"] in ("backoff", "starting", "failed")
    code, out, _ = await rosey("status", cwd=bot.workdir)
    assert code == 0 and out.splitlines()[0].split()[:4] == ["NAME", "KIND", "STATE", "PID"]
