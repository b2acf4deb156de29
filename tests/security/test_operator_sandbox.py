"""The OS sandbox as an operator configures it: ``rosey.toml`` grants, through the real RoseyApp.

``tests/sandbox`` proves each layer on a bare PluginProcess; here the question is whether what
``rosey run`` computes from a config (``grants.sandbox_for`` + ``process.environment``) keeps the
operator's own secrets (environment, rosey.toml, the runtime file with the core's NATS
credentials, the nats-server config with every password, other plugins' data) out of a plugin's
reach, and whether ``env`` / ``read_paths`` / ``write_paths`` / ``network`` grants open exactly
what they name, for that plugin only.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.rosey.config import load_config
from bot.rosey.errors import ConfigError
from tests.reach import refused as out_of_reach
from tests.security.conftest import HOSTILE, Rosey, StartRosey

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

SECRETS = {
    "ROSEY_TEST_SECRET": "hunter2",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}


class Listener:
    """A TCP listener on a port the kernel chose; ``accepted`` is set by the first connection."""

    def __init__(self) -> None:
        self.accepted = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.set()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def listeners() -> AsyncIterator[tuple[Listener, Listener]]:
    pair = (Listener(), Listener())
    yield pair
    for listener in pair:
        await listener.close()


async def environ(rosey: Rosey, plugin: str) -> dict[str, str]:
    return dict((await rosey.attempt(plugin, "environ"))["value"])


async def test_host_secrets_stay_out_of_plugin_environments(
    start_rosey: StartRosey, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    rosey = await start_rosey({"hostile": {}, "granted": {"env": ["ROSEY_TEST_SECRET"]}, "canary": {}})

    hostile = await environ(rosey, "hostile")
    granted = await environ(rosey, "granted")
    for name, value in SECRETS.items():
        assert name not in hostile
        assert value not in hostile.values()
    assert granted["ROSEY_TEST_SECRET"] == "hunter2"
    assert "AWS_SECRET_ACCESS_KEY" not in granted
    assert set(granted) - set(hostile) == {"ROSEY_TEST_SECRET"}  # the grant adds that one only

    # Each plugin holds its own NATS identity, never the core's.
    assert rosey.runtime.password
    for name, env in (("hostile", hostile), ("granted", granted)):
        assert env["NATS_USER"] == f"plugin_{name}"
        assert env["NATS_PASSWORD"] and env["NATS_PASSWORD"] != rosey.runtime.password
        assert not any(rosey.runtime.password in value for value in env.values())
    assert hostile["NATS_PASSWORD"] != granted["NATS_PASSWORD"]
    # Nothing else in its environment opens a second, better connection.
    stolen = await rosey.attempt("hostile", "env_connect", "rosey.commands.canary.execute", "via-env")
    assert stolen["outcome"] == "denied", stolen
    assert "authorization violation" in stolen["error"].lower(), stolen
    assert not await rosey.canary_saw("via-env")


async def test_host_nats_token_stays_out_of_plugin_environments(
    start_rosey: StartRosey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_TOKEN", "the-operators-nats-token")
    rosey = await start_rosey({"hostile": {}, "canary": {}})
    assert "the-operators-nats-token" not in (await environ(rosey, "hostile")).values()


@pytest.fixture(params=["best-effort", "strict"])
def sandbox_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_operator_files_and_other_plugins_data_are_out_of_reach(
    start_rosey: StartRosey, sandbox_mode: str
) -> None:
    rosey = await start_rosey(sandbox=sandbox_mode)
    state = rosey.state_dir
    canary_file = state / "data" / "canary" / "diary.txt"
    canary_file.write_text("the canary's own data")
    runtime_before = (state / "runtime.json").read_bytes()
    protected = {
        "config": rosey.workdir / "rosey.toml",
        "runtime file (core credentials)": state / "runtime.json",
        "nats-server config (every password)": state / "nats" / "nats-server.conf",
        "another plugin's data": canary_file,
    }
    for what, path in protected.items():
        assert path.is_file(), what
        report = await rosey.attempt("hostile", "read_file", path)
        assert out_of_reach(report), (what, report)
    for directory in (state, state / "nats", state / "data", rosey.workdir):
        report = await rosey.attempt("hostile", "list_dir", directory)
        assert out_of_reach(report), (directory, report)

    for path in (state / "runtime.json", state / "data" / "canary" / "planted.txt", rosey.workdir / "x.py"):
        report = await rosey.attempt("hostile", "write_file", path, "planted")
        assert out_of_reach(report), (path, report)
    assert (state / "runtime.json").read_bytes() == runtime_before
    assert not (state / "data" / "canary" / "planted.txt").exists()

    own = state / "data" / "hostile" / "notes.txt"
    assert (await rosey.attempt("hostile", "write_file", own, "mine"))["outcome"] == "allowed"
    assert own.read_text() == "mine"
    assert (await rosey.attempt("hostile", "read_file", own))["value"] == "mine"
    assert (await rosey.attempt("hostile", "read_file", HOSTILE))["outcome"] == "allowed"  # its own code


async def test_grants_open_exactly_what_they_name(
    start_rosey: StartRosey, tmp_path: Path, listeners: tuple[Listener, Listener]
) -> None:
    granted_port, other_port = [await listener.start() for listener in listeners]
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "info.txt").write_text("granted reading")
    private = tmp_path / "private.txt"
    private.write_text("not granted")
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    grants = {"read_paths": ["shared"], "write_paths": ["outbox"], "network": [f"127.0.0.1:{granted_port}"]}
    rosey = await start_rosey({"granted": grants, "hostile": {}, "canary": {}})

    assert (await rosey.attempt("granted", "read_file", shared / "info.txt"))["value"] == "granted reading"
    written = await rosey.attempt("granted", "write_file", outbox / "report.txt", "from the plugin")
    assert written["outcome"] == "allowed", written
    assert (outbox / "report.txt").read_text() == "from the plugin"
    connected = await rosey.attempt("granted", "tcp_connect", "127.0.0.1", granted_port)
    assert connected["outcome"] == "allowed", connected
    await asyncio.wait_for(listeners[0].accepted.wait(), 5)

    refused = {
        "granted": [
            ("read_file", private),
            ("write_file", shared / "planted.txt"),  # a read grant is not a write grant
            ("tcp_connect", "127.0.0.1", other_port),
        ],
        "hostile": [  # grants belong to the plugin they are written for
            ("read_file", shared / "info.txt"),
            ("write_file", outbox / "hostile.txt"),
            ("tcp_connect", "127.0.0.1", granted_port),
        ],
    }
    for plugin, attempts in refused.items():
        for attempt in attempts:
            report = await rosey.attempt(plugin, *attempt)
            if attempt[0] == "tcp_connect":
                assert (report["outcome"], report["errno"]) == ("denied", "EACCES"), (plugin, attempt, report)
            else:
                assert out_of_reach(report), (plugin, attempt, report)
    assert not (shared / "planted.txt").exists() and not (outbox / "hostile.txt").exists()
    assert not listeners[1].accepted.is_set()


def test_subscribe_grant_ending_in_star_is_refused(tmp_path: Path) -> None:
    """NATS's trap: an allow ``a.b.*`` lets a client subscribe ``a.b.>``, and no deny can
    keep one level while refusing the rest, so such a grant is refused at load time."""
    (tmp_path / "rosey.toml").write_text('[plugins.granted]\nsubscribe = ["rosey.plugins.canary.*"]\n')
    with pytest.raises(
        ConfigError, match=r"plugins\.granted\.subscribe\[0\]: must not end in '\*'.*canary\.>"
    ):
        load_config(tmp_path / "rosey.toml")
    (tmp_path / "rosey.toml").write_text('[plugins.granted]\nsubscribe = ["rosey.plugins.*.stats"]\n')
    assert load_config(tmp_path / "rosey.toml").plugins["granted"].subscribe == ("rosey.plugins.*.stats",)


async def test_plugin_file_next_to_rosey_toml_cannot_read_the_state_dir(
    start_rosey: StartRosey, tmp_path: Path
) -> None:
    """``[plugins.hostile] path = "hostile.py"`` beside rosey.toml, a natural layout for one plugin."""
    local = tmp_path / "hostile.py"
    shutil.copy(HOSTILE, local)
    rosey = await start_rosey({"hostile": {"path": str(local)}, "canary": {}})
    assert (await rosey.attempt("hostile", "ping"))["value"] == "pong"
    outcomes = {}
    reports = []
    for path in (
        rosey.workdir / "rosey.toml",
        rosey.state_dir / "runtime.json",  # the core's NATS password: the whole bus
        rosey.state_dir / "nats" / "nats-server.conf",  # every plugin's password
    ):
        reports.append(await rosey.attempt("hostile", "read_file", path))
        outcomes[path.name] = reports[-1]["outcome"]
    reports.append(await rosey.attempt("hostile", "list_dir", rosey.state_dir / "data" / "canary"))
    outcomes["data/canary"] = reports[-1]["outcome"]
    assert set(outcomes.values()) <= {"denied", "error"}, outcomes  # today: all "allowed"
    assert all(out_of_reach(report) for report in reports), reports
