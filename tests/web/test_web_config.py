"""[web] in rosey.toml, and the readiness verdict read from a status."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.rosey.config import load_config
from bot.rosey.errors import ConfigError
from bot.rosey.supervision.status import (
    LauncherStatus,
    NatsStatus,
    PluginState,
    PluginStatus,
    RoseyStatus,
    WatchdogStatus,
)
from bot.rosey.web.health import readiness

pytestmark = pytest.mark.no_nats


def test_defaults_and_values(tmp_path: Path) -> None:
    assert load_config(base_dir=tmp_path).web.enabled is True
    assert load_config(base_dir=tmp_path).web.port == 0
    (tmp_path / "rosey.toml").write_text("[web]\nenabled = false\nport = 8080\n")
    web = load_config(base_dir=tmp_path).web
    assert (web.enabled, web.port) == (False, 8080)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[web]\nport = 70000\n", "web.port"),
        ("[web]\nport = true\n", "web.port"),
        ('[web]\nenabled = "yes"\n', "web.enabled"),
        ('[web]\nhost = "0.0.0.0"\n', "web.host"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "rosey.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(base_dir=tmp_path)
    assert caught.value.key == key, caught.value


def status(*plugins: PluginStatus) -> RoseyStatus:
    return RoseyStatus(
        pid=1,
        nats=NatsStatus(url="nats://127.0.0.1:1", embedded=True),
        uptime_seconds=1.0,
        plugins=plugins,
        launcher=LauncherStatus(kind="spawn"),
        sandbox_mode="best-effort",
        sandbox_support={},
        watchdog=WatchdogStatus(),
    )


def test_readiness_reasons() -> None:
    fine = status(
        PluginStatus(name="a", state=PluginState.RUNNING),
        PluginStatus(name="b", state=PluginState.STOPPED),
        PluginStatus(name="c", state=PluginState.DISABLED),
    )
    assert readiness(fine, nats_connected=True).ready
    bad = status(
        PluginStatus(name="a", state=PluginState.BACKOFF, last_exit="killed by SIGKILL"),
        PluginStatus(name="irc", kind="adapter", state=PluginState.STARTING),
    )
    verdict = readiness(bad, nats_connected=False, started=False)
    assert verdict.reasons == (
        "rosey is still starting",
        "the core is not connected to NATS",
        "plugin 'a' is backoff: killed by SIGKILL",
        "adapter 'irc' is starting",
    )
