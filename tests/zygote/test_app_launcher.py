"""``[rosey] launcher`` through the real RoseyApp: one zygote for the app's lifetime, or none."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psutil
import pytest

from bot.rosey.app import RoseyApp
from bot.rosey.config import LAUNCHER_ENV, STATE_DIR_ENV, Launcher, load_config
from bot.rosey.plugins.process.child_exit import ForeignChild
from tests.processes import wait_pid_gone

from .conftest import INTROSPECT

pytestmark = pytest.mark.timeout(60)


@pytest.mark.no_nats  # the app embeds its own server
@pytest.mark.parametrize("launcher", [Launcher.ZYGOTE, Launcher.SPAWN])
async def test_the_app_starts_plugins_with_the_configured_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: Launcher
) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.delenv(LAUNCHER_ENV, raising=False)  # the file's launcher is the subject here
    config_file = tmp_path / "rosey.toml"
    plugins = "".join(
        f"[plugins.{n}]\npath = {json.dumps(str(INTROSPECT))}\n" for n in ("intro_a", "intro_b")
    )
    config_file.write_text(
        "[rosey]\n"
        f'state_dir = ".rosey"\nplugin_dirs = []\nentry_points = false\nlauncher = "{launcher.value}"\n'
        + plugins
    )
    app = RoseyApp(load_config(config_file))
    try:
        results = await app.start()
        assert results == {"intro_a": None, "intro_b": None}
        assert app.supervisor is not None and app.router is not None
        parents = set()
        for name in ("intro_a", "intro_b"):
            runner = app.supervisor.get(name).process
            assert runner is not None
            expected = ForeignChild if launcher is Launcher.ZYGOTE else subprocess.Popen
            assert isinstance(runner.process, expected)
            outcome = await app.router.execute(name, ["describe"], timeout=10)
            assert outcome.ok, outcome
            assert outcome.data["sandbox"]  # the app's sandbox is applied on both paths
            row = app.status().plugin(name)
            assert row is not None and row.launcher == launcher.value  # what really made it
            parents.add(outcome.data["ppid"])
        if launcher is Launcher.ZYGOTE:
            assert app.zygote is not None and parents == {app.zygote.pid}
        else:
            assert app.zygote is None and parents == {os.getpid()}
    finally:
        zygote_pid = app.zygote.pid if app.zygote is not None else None
        await app.stop()
    if zygote_pid is not None:
        assert await wait_pid_gone(zygote_pid, 10)  # stop() stops the zygote too
        assert not psutil.pid_exists(zygote_pid)
