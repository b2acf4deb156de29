"""A command to a plugin whose on_start has not finished is answered at once ("still starting"),
not after the command timeout; once it is ready, commands work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.rosey.app import RoseyApp
from bot.rosey.config import load_config
from bot.rosey.core.events import Event
from bot.rosey.services.router import OutcomeKind
from bot.rosey.supervision.status import PluginState

SLOW = Path(__file__).parents[1] / "plugins" / "fixtures" / "slow_start_plugin.py"

pytestmark = pytest.mark.timeout(60)


async def test_a_command_during_on_start_is_answered_at_once(tmp_path: Path) -> None:
    # Disabled at first, so the test can listen before the plugin starts (`rosey start` enables it).
    (tmp_path / "rosey.toml").write_text(
        f"[rosey]\nplugin_dirs = []\nentry_points = false\ncommand_timeout = 30\n"
        f'[plugins.slowstart]\npath = "{SLOW}"\nenabled = false\n'
    )
    app = RoseyApp(load_config(tmp_path / "rosey.toml"))
    await app.start()
    starting: asyncio.Task[None] | None = None
    try:
        assert app.bus is not None and app.supervisor is not None and app.router is not None
        waiting = asyncio.Event()

        async def on_waiting(_: Event) -> None:
            waiting.set()

        await app.bus.subscribe("rosey.plugins.slowstart.waiting", on_waiting)
        await app.bus.flush()
        starting = asyncio.create_task(app.supervisor.start("slowstart"))
        await asyncio.wait_for(waiting.wait(), 15)  # inside on_start, subscribed to its release
        assert app.supervisor.get("slowstart").state is PluginState.STARTING
        outcome = await app.router.execute("slowstart", [], timeout=30)
        assert outcome.kind is OutcomeKind.UNAVAILABLE, outcome
        assert outcome.message.startswith("plugin 'slowstart' is still starting (its on_start"), outcome
        await app.bus.publish("rosey.events.release_slowstart", {}, "test")
        await asyncio.wait_for(starting, 15)
        answered = await app.router.execute("slowstart", [])
        assert answered.ok and answered.message == "initialized", answered
    finally:
        if starting is not None and not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await app.stop()
