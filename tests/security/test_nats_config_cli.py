"""``rosey nats-config``: the authorization block for an operator's own nats-server.

The printed block is loaded unedited by a real nats-server whose environment holds the
``ROSEY_NATS_PASSWORD_<NAME>`` variables it references; it must then enforce the same
per-plugin subjects as the embedded one; and ``RoseyApp`` run against that server
(``[nats] url``, the same variables) must keep the same guarantees.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.rosey.broker.identities import plugin_permissions
from bot.rosey.broker.nats_server import find_nats_server
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import BusNotConnected
from tests.cli.conftest import rosey
from tests.security.conftest import CANARY, HOSTILE, Rosey, StartRosey, TomlValue, toml_table, violation

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

_LISTENING = re.compile(r"Listening for client connections on \S+:(\d+)")
PLUGINS: dict[str, dict[str, TomlValue]] = {
    "hostile": {"path": str(HOSTILE), "publish": ["weather.report"]},
    "canary": {"path": str(CANARY)},
}


async def nats_config(workdir: Path) -> str:
    """Run ``rosey nats-config`` as an operator would, in the directory of rosey.toml."""
    code, out, err = await rosey("nats-config", cwd=workdir, timeout=20)
    assert code == 0, err
    return out


@dataclass
class OperatorServer:
    """A nats-server started by hand on ``-c <file> -p -1``; the port is read from its log."""

    config: Path
    env: dict[str, str] = field(default_factory=dict)  # added to the server's environment
    process: asyncio.subprocess.Process | None = None
    port: int | None = None
    log: list[str] = field(default_factory=list)
    _ready: asyncio.Future[bool] | None = None
    _drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> bool:
        """True once ready; False if the server exited first (it refused the configuration)."""
        self._ready = asyncio.get_running_loop().create_future()
        self.process = await asyncio.create_subprocess_exec(
            str(find_nats_server()),
            "-c",
            str(self.config),
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **self.env},
        )
        self._drain = asyncio.create_task(self._read_log())
        return await asyncio.wait_for(self._ready, 10)

    async def _read_log(self) -> None:
        assert self.process is not None and self.process.stderr is not None and self._ready is not None
        async for raw in self.process.stderr:  # drained to the end: the server never blocks on it
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if match := _LISTENING.search(line):
                self.port = int(match.group(1))
            if "Server is ready" in line and not self._ready.done():
                self._ready.set_result(True)
        if not self._ready.done():
            self._ready.set_result(False)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._drain is not None:
            await asyncio.wait_for(self._drain, 5)


@dataclass
class Operator:
    server: OperatorServer
    passwords: dict[str, str]  # placeholder name ("CORE", "HOSTILE", ...) -> password
    printed: str

    @property
    def core_url(self) -> str:
        return f"nats://rosey_core:{self.passwords['CORE']}@127.0.0.1:{self.server.port}"


def password_env(passwords: Mapping[str, str]) -> dict[str, str]:
    """What the operator exports for nats-server, as the printed header says."""
    return {f"ROSEY_NATS_PASSWORD_{name}": password for name, password in passwords.items()}


@pytest.fixture
async def servers() -> AsyncIterator[list[OperatorServer]]:
    started: list[OperatorServer] = []
    yield started
    for server in started:
        await server.stop()


@pytest.fixture
async def operator(tmp_path: Path, servers: list[OperatorServer]) -> Operator:
    """An operator's nats-server, configured from ``rosey nats-config`` with chosen passwords."""
    text = "".join(toml_table(f"plugins.{name}", table) for name, table in PLUGINS.items())
    (tmp_path / "rosey.toml").write_text("[rosey]\nentry_points = false\nplugin_dirs = []\n" + text)
    printed = await nats_config(tmp_path)
    # As the printed header asks: letters and digits, a letter first (nats-server parses the value).
    passwords = {name: "pw" + secrets.token_hex(16) for name in ("CORE", "HOSTILE", "CANARY")}
    config = tmp_path / "operator-nats.conf"
    config.write_text(printed)  # unedited: the passwords come from the environment
    server = OperatorServer(config, env=password_env(passwords))
    servers.append(server)
    assert await server.start(), "\n".join(server.log)
    return Operator(server, passwords, printed)


_USER_LINE = re.compile(r'\{user: ("[^"]+"), password: \$(\w+)(?:, permissions: (\{.*\}))?\}$')


def authorization(printed: str) -> dict[str, dict[str, object]]:
    """The printed users, by name: ``{"user", "password_variable", "permissions"?}``."""
    users: dict[str, dict[str, object]] = {}
    for line in printed.splitlines():
        if match := _USER_LINE.search(line.strip()):
            entry: dict[str, object] = {"user": json.loads(match[1]), "password_variable": match[2]}
            if match[3]:
                entry["permissions"] = json.loads(match[3])
            users[str(entry["user"])] = entry
    return users


async def test_printed_block_grants_what_rosey_run_grants(operator: Operator) -> None:
    users = authorization(operator.printed)
    assert set(users) == {"rosey_core", "plugin_hostile", "plugin_canary"}
    assert users["plugin_hostile"]["password_variable"] == "ROSEY_NATS_PASSWORD_HOSTILE"
    assert "permissions" not in users["rosey_core"]
    assert users["plugin_hostile"]["permissions"] == plugin_permissions(
        "hostile", extra_publish=["weather.report"]
    )
    assert users["plugin_canary"]["permissions"] == plugin_permissions("canary")


async def test_operator_server_enforces_the_printed_permissions(operator: Operator) -> None:
    url = operator.server.url
    with pytest.raises(BusNotConnected):
        await EventBus(url, user="plugin_hostile", password="not-the-password", connect_timeout=1).connect()

    core = EventBus(url, name="core", user="rosey_core", password=operator.passwords["CORE"])
    hostile = EventBus(
        url,
        name="hostile",
        user="plugin_hostile",
        password=operator.passwords["HOSTILE"],
        inbox_prefix="_INBOX.plugin_hostile",
    )
    async with core, hostile:
        seen: list[str] = []
        arrived = asyncio.Event()

        async def record(event: Event) -> None:
            seen.append(event.subject)
            arrived.set()

        for subject in ("rosey.commands.canary.execute", "rosey.commands.hostile.result", "weather.report"):
            await core.subscribe(subject, record)
        await core.flush()

        await hostile.publish("rosey.commands.canary.execute", {}, "hostile")  # a foreign subject
        await hostile.flush()
        assert hostile.stats.permission_violations == 1
        assert hostile.stats.last_error == violation("publish", "rosey.commands.canary.execute")
        stolen = await hostile.subscribe("rosey.commands.canary.execute", record)
        await hostile.flush()
        assert hostile.stats.permission_violations == 2
        assert stolen.active  # the client keeps it; the server routes nothing to it

        for subject in ("rosey.commands.hostile.result", "weather.report"):  # its own, and its grant
            arrived.clear()
            await hostile.publish(subject, {}, "hostile")
            await asyncio.wait_for(arrived.wait(), 5)
        assert seen == ["rosey.commands.hostile.result", "weather.report"]
        assert hostile.stats.permission_violations == 2

        commands: list[str] = []
        got_command = asyncio.Event()

        async def on_command(event: Event) -> None:
            commands.append(str(event.data.get("marker")))
            got_command.set()

        await hostile.subscribe(Subjects.plugin_command("hostile", "execute"), on_command)
        await hostile.flush()
        await core.publish(Subjects.plugin_command("canary", "execute"), {"marker": "for-canary"}, "core")
        await core.publish(Subjects.plugin_command("hostile", "execute"), {"marker": "for-hostile"}, "core")
        await asyncio.wait_for(got_command.wait(), 5)
        await hostile.flush()
        assert commands == ["for-hostile"]
        assert seen.count("rosey.commands.canary.execute") == 1  # the core's own, seen by the core only


async def test_unedited_block_does_not_open_the_core_with_a_known_password(
    tmp_path: Path, servers: list[OperatorServer]
) -> None:
    (tmp_path / "rosey.toml").write_text(
        "[rosey]\nentry_points = false\n" + toml_table("plugins.canary", {"path": str(CANARY)})
    )
    config = tmp_path / "as-printed.conf"
    config.write_text(await nats_config(tmp_path))
    server = OperatorServer(config)  # none of the password variables set
    servers.append(server)
    assert not await server.start(), "nats-server started with unset password variables"
    assert any("ROSEY_NATS_PASSWORD_CORE" in line for line in server.log), server.log


@pytest.fixture
async def external(
    operator: Operator, start_rosey: StartRosey, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Rosey:
    """RoseyApp against the operator's server, configured as the nats-config header says."""
    for name in ("HOSTILE", "CANARY"):
        monkeypatch.setenv(f"ROSEY_NATS_PASSWORD_{name}", operator.passwords[name])
    workdir = tmp_path / "bot"
    workdir.mkdir()
    rosey = await start_rosey({"hostile": {}, "canary": {}}, nats={"url": operator.core_url}, workdir=workdir)
    assert not rosey.app.embedded
    return rosey


async def test_rosey_run_against_the_operator_server_keeps_plugins_apart(external: Rosey) -> None:
    rosey = external
    assert (await rosey.command("canary", "hello")).ok
    report = await rosey.attempt("hostile", "publish", "rosey.commands.canary.execute", "ext-forged")
    assert (report["outcome"], report["error"]) == (
        "denied",
        violation("publish", "rosey.commands.canary.execute"),
    )
    report = await rosey.attempt("hostile", "subscribe", ">")
    assert report["outcome"] == "denied", report
    assert not await rosey.canary_saw("ext-forged")


async def test_rosey_run_against_the_operator_server_hides_the_core_password(external: Rosey) -> None:
    rosey = external
    env = (await rosey.attempt("hostile", "environ"))["value"]
    leaked = [name for name, value in env.items() if rosey.runtime.nats_url in value or "rosey_core" in value]
    stolen = await rosey.attempt("hostile", "env_connect", "rosey.commands.canary.execute", "via-env")
    reached = await rosey.canary_saw("via-env")
    assert (leaked, stolen["outcome"], reached) == ([], "denied", False)
