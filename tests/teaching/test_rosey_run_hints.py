"""Errors that teach under `rosey run` (the real supervisor, both launchers): the ready line,
`rosey status`, `rosey logs` and the bot's log say the file, the line and the fix, once."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import pytest

from tests.cli.conftest import ROSEY, rosey, start_run, user_env

from .test_harness_hints import DOCS, FIXTURES, HOST_IMPORT, SLOW, line_of

FORGED = FIXTURES / "forged_hint_plugin.py"

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("launcher", ["zygote", "spawn"])
async def test_rosey_run_teaches_both_errors(tmp_path: Path, launcher: str) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(HOST_IMPORT, plugins / "hostimport.py")
    shutil.copy(SLOW, plugins / "slow.py")
    imported = line_of(HOST_IMPORT, "from bot.rosey.services.router")
    refusal = (
        f"plugins/hostimport.py:{imported} imports bot.rosey.services.router, which is Rosey's host "
        "code and does not run in a plugin process: talk to the bot over NATS through the SDK instead "
        "(self.publish_result, self.publish_event, self.subscribe_to_events; "
        f"see {DOCS}#publishing-responses)"
    )
    bot = await start_run(tmp_path, env={"ROSEY_LAUNCHER": launcher})
    try:
        # A host import: the plugin fails to start, with the hint as its reason, and is not retried.
        assert f"plugin 'hostimport' failed to start: {refusal}" in bot.ready_line, bot.ready_line
        rows = {row["name"]: row for row in (await bot.status())["plugins"]}
        assert rows["hostimport"]["state"] == "failed"
        assert rows["hostimport"]["reason"] == f"failed to start: {refusal}"
        assert rows["hostimport"]["restarts"] == 0
        assert rows["slow"]["launcher"] == launcher
        code, out, _ = await rosey("logs", "hostimport", cwd=tmp_path)
        assert code == 0 and "Traceback" not in out, out
        assert [line for line in out.splitlines() if "rosey hint: " in line] == [
            f"[err] rosey hint: {plugins / 'hostimport.py'}:{refusal.split(':', 1)[1]}"
        ], out

        # A blocked loop: told in the plugin's log while the command still runs; a short block is not.
        follow = await asyncio.create_subprocess_exec(
            *ROSEY, "logs", "slow", "--lines", "1", "--follow",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, env=user_env(),
        )  # fmt: skip
        assert follow.stdout is not None
        try:
            code, out, _ = await rosey("send", "slow", "short", "0.5", cwd=tmp_path)
            assert code == 0 and "short 0.5" in out, out
            sent = asyncio.ensure_future(rosey("send", "slow", "long", "2", cwd=tmp_path))
            while True:
                line = (await asyncio.wait_for(follow.stdout.readline(), 30)).decode()
                assert line, "rosey logs --follow ended early"
                if "rosey hint: " in line:
                    break
            code, out, _ = await sent
            assert code == 0 and "long 2" in out, out
            follow.send_signal(signal.SIGINT)
            await asyncio.wait_for(follow.wait(), 10)
        finally:
            if follow.returncode is None:
                follow.kill()
                await follow.wait()
        where = f"{plugins / 'slow.py'}:{line_of(SLOW, 'the long block')}"
        assert line.rstrip().endswith(
            f"WARNING - rosey hint: {where} (in handle_command) blocked the event loop for over 1 s: "
            "`time.sleep(seconds)` stops every other command of this plugin, and its liveness pings "
            "(~8 s of them and it is killed); use `await asyncio.sleep(...)` instead "
            f"(see {DOCS}#concurrency)"
        ), line
        rows = {row["name"]: row for row in (await bot.status())["plugins"]}
        assert rows["slow"]["state"] == "running" and rows["slow"]["restarts"] == 0
    finally:
        bot.proc.terminate()
        await bot.proc.wait()
    log = (tmp_path / "rosey-run.log").read_text()
    # The bot's own log has each hint once, in the plugin's output, and no traceback.
    assert log.count(f"[hostimport] rosey hint: {plugins / 'hostimport.py'}:{imported} imports") == 1, log
    assert log.count(f"rosey hint: {where} (in handle_command)") == 1, log
    assert "Traceback" not in log, log


@pytest.mark.parametrize("launcher", ["zygote", "spawn"])
async def test_a_forged_hint_is_only_ever_shown_escaped_bounded_and_as_its_own_plugins(
    tmp_path: Path, launcher: str
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(FORGED, plugins / "forged.py")
    shutil.copy(SLOW, plugins / "slow.py")
    bot = await start_run(tmp_path, env={"ROSEY_LAUNCHER": launcher})
    try:
        rows = {row["name"]: row for row in (await bot.status())["plugins"]}
        reason = rows["forged"]["reason"]
        assert reason.startswith("failed to start: /etc/passwd:1 \\x1b[2J\\x1b]0;owned\\x07 pretends"), reason
        assert "\x1b" not in reason and "\x07" not in reason
        assert len(reason) <= len("failed to start: ") + 600 and reason.endswith("..."), len(reason)
        assert "\x1b" not in bot.ready_line and len(bot.ready_line) < 2000, bot.ready_line
        assert rows["slow"]["state"] == "running" and rows["slow"]["reason"] is None  # nobody else's
    finally:
        bot.proc.terminate()
        await bot.proc.wait()
    assert "\x1b" not in (tmp_path / "rosey-run.log").read_text()
