"""A plugin's output outlives the bot: `rosey logs` reads it from the state directory after a stop,
and the files stay size-bounded."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from bot.rosey.plugin_logs import PluginLogFiles, read_plugin_log
from bot.rosey.plugins.process.output import OutputLine

from .conftest import RunningRosey, rosey

pytestmark = pytest.mark.timeout(60)


async def test_logs_are_readable_after_the_bot_stopped(running: RunningRosey) -> None:
    code, _, err = await rosey("send", "echo", "remember", "me", cwd=running.workdir)
    assert code == 0, err
    running.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(running.proc.wait(), 20) == 0
    code, out, err = await rosey("logs", "echo", "-n", "200", cwd=running.workdir)
    assert code == 0, err
    assert "Rosey is not running" in err
    assert "Echo plugin stopping... (echoed 1 messages)" in out, out  # written while it stopped
    code, _, err = await rosey("logs", "nosuch", cwd=running.workdir)
    assert code == 2 and "no logs of plugin 'nosuch'" in err, err


def test_log_files_rotate_and_stay_bounded(tmp_path: Path) -> None:
    files = PluginLogFiles(tmp_path, max_bytes=4096, backups=2)
    for index in range(2000):
        files.write("chatty", OutputLine(time.time(), "stdout", f"line {index} " + "x" * 40))
    files.close()
    sizes = [path.stat().st_size for path in tmp_path.iterdir()]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chatty.log", "chatty.log.1", "chatty.log.2"]
    assert max(sizes) <= 4096 and sum(sizes) <= 3 * 4096
    last = read_plugin_log(tmp_path, "chatty", 5)
    assert [record["text"].split()[1] for record in last] == ["1995", "1996", "1997", "1998", "1999"]  # type: ignore[union-attr]
