"""Plugin files that cannot be loaded are failed plugins with a reason, everywhere a user looks:
the ready line, `rosey status`, `rosey plugins list`, and the answer to their command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import RunningRosey, rosey, start_run

pytestmark = pytest.mark.timeout(60)

GOOD = """
from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class {cls}(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "{name}"

    async def handle_command(self, event: Event) -> None:
        await self.publish_result({{"message": "ok"}}, event.correlation_id)


if __name__ == "__main__":
    run_plugin({cls})
"""


@pytest.fixture
async def broken_project(tmp_path: Path) -> RunningRosey:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "echo.py").write_text(GOOD.format(cls="Echo", name="echo"))
    (plugins / "broken.py").write_text("from bot.rosey.plugins.plugin_interface import (\n")
    # A config path inside the discovered directory, under another name than its plugin_name.
    (plugins / "greeter.py").write_text(GOOD.format(cls="Greeter", name="greeter"))
    two = GOOD.format(cls="One", name="one").split("if __name__")[0] + GOOD.format(cls="Two", name="two")
    (tmp_path / "two.py").write_text(two.replace('if __name__ == "__main__":\n    run_plugin(Two)\n', ""))
    (tmp_path / "rosey.toml").write_text(
        '[plugins.hello]\npath = "plugins/greeter.py"\n[plugins.pair]\npath = "two.py"\n'
    )
    return await start_run(tmp_path)


async def test_unloadable_plugins_are_failed_with_their_reason(broken_project: RunningRosey) -> None:
    bot = broken_project
    try:
        ready = bot.ready_line
        assert ready.startswith("Rosey ready: 1/4 plugins running (echo); 3 failed ("), ready
        assert "plugin 'broken' failed to load: plugins/broken.py:1: SyntaxError: " in ready, ready
        status = await bot.status()
        rows = {row["name"]: row for row in status["plugins"]}
        assert set(rows) == {"echo", "broken", "hello", "pair"}  # greeter.py does not run twice
        assert rows["broken"]["state"] == "failed"
        assert rows["broken"]["reason"].startswith("failed to load: plugins/broken.py:1: SyntaxError")
        assert "its plugin_name is 'greeter' but rosey.toml calls it 'hello'" in rows["hello"]["reason"]
        assert "defines 2 plugin classes (One, Two) and no run_plugin" in rows["pair"]["reason"]
        assert rows["broken"]["restarts"] == 0  # never retried: it cannot get better by itself
        code, out, err = await rosey("send", "broken", cwd=bot.workdir)
        assert code == 2
        assert err.strip().startswith("plugin 'broken' failed to load: plugins/broken.py:1: SyntaxError"), err
        code, out, err = await rosey("plugins", "list", "--json", cwd=bot.workdir)
        listed = {row["name"]: row for row in json.loads(out)["plugins"]}
        assert listed["broken"]["problem"].startswith("plugins/broken.py:1: SyntaxError")
        assert listed["echo"]["problem"] is None
    finally:
        bot.proc.terminate()
        await bot.proc.wait()


async def test_a_plugin_that_raises_at_start_shows_why_once_and_is_not_retried(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "echo.py").write_text(GOOD.format(cls="Echo", name="echo"))
    (plugins / "weather.py").write_text(
        "import requests_that_is_not_installed\n" + GOOD.format(cls="W", name="weather")
    )
    bot = await start_run(tmp_path)
    try:
        expected = (
            "ModuleNotFoundError: No module named 'requests_that_is_not_installed' (plugins/weather.py:1)"
        )
        assert f"plugin 'weather' failed to start: {expected}" in bot.ready_line, bot.ready_line
        rows = {row["name"]: row for row in (await bot.status())["plugins"]}
        assert rows["weather"]["state"] == "failed"
        assert rows["weather"]["reason"] == f"failed to start: {expected}"
        assert rows["weather"]["restarts"] == 0  # an exception before ever being ready: not retried
        code, out, _ = await rosey("logs", "weather", cwd=bot.workdir)
        assert code == 0 and out.count("Traceback (most recent call last):") == 1, out
        assert "bot/rosey/" not in out and "<frozen runpy>" not in out, out  # the plugin's frames only
    finally:
        bot.proc.terminate()
        await bot.proc.wait()
    log = (tmp_path / "rosey-run.log").read_text()
    assert log.count("Traceback (most recent call last):") == 1, log  # printed once, in the log
