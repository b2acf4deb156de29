"""A hub (`rosey run`) and a host (`rosey host`) as real processes in two temporary directories,
each with its own nats-server on loopback; the host is a leaf node of the hub."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.rosey.cli.client import ask, connect
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.runtime import RuntimeInfo, read_runtime
from tests.cli.conftest import ROSEY, RunningRosey, start_run, user_env

FIXTURES = Path(__file__).parent / "fixtures"

T = TypeVar("T")
#: What changes the hub's view of its hosts: a heartbeat (rows, and the host's state) and the
#: hub's own word that a host became connected or lost (hosts/registry.py).
HOST_NEWS = ("rosey.hosts.*.heartbeat", "rosey.hosts.*.state")

HUB_TOML = """\
[rosey]
command_timeout = 30.0   # a command that waited for its timeout would outlive the test's bound

[hub]
leaf_listen = "127.0.0.1:0"

[hosts.b]
plugins = ["far_echo", "evil"]

[web]
enabled = false
"""

#: A configured but disabled IRC adapter: a test speaks for it with the hub's core identity.
DISABLED_IRC = """\
[adapters.irc]
type = "irc"
enabled = false
server = "127.0.0.1"
port = 6667
tls = false
nick = "rosey"
channels = ["#rosey"]
"""

EVIL_PUBLISH = [
    "rosey.commands.echo.execute",
    "rosey.supervisor.shutdown",
    "rosey.hosts.c.heartbeat",
    "rosey.chat.console.send",
]
EVIL_SUBSCRIBE = ["rosey.plugins.echo.>", "rosey.supervisor.>", "rosey.commands.echo.execute"]


def host_toml(leaf_url: str) -> str:
    return f"""\
[rosey]
entry_points = false

[host]
name = "b"
hub = "{leaf_url}"
credentials = "b.credentials"

[plugins.far_echo]
path = "{FIXTURES / "far_echo.py"}"

# A compromised host's file grants its plugin far more than the hub does: the hub's ceiling holds.
[plugins.evil]
path = "{FIXTURES / "evil.py"}"
publish = {EVIL_PUBLISH!r}
subscribe = {EVIL_SUBSCRIBE!r}
""".replace("'", '"')


class Host:
    def __init__(self, workdir: Path, launcher: str | None = None, name: str = "b") -> None:
        self.workdir = workdir
        self.launcher = launcher
        self.name = name  # s-spread: hosts b and c
        self.proc: asyncio.subprocess.Process | None = None
        self.ready_line = ""

    async def start(self) -> None:
        env = {**user_env(), **({"ROSEY_LAUNCHER": self.launcher} if self.launcher else {})}
        with (self.workdir / "rosey-host.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *ROSEY,
                "host",
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
            )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line.startswith(f"Rosey host {self.name} ready".encode()):
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"rosey host did not get ready: {line!r}\n{self.log()}")
        self.ready_line = line.decode()

    def log(self) -> str:
        return (self.workdir / "rosey-host.log").read_text(errors="replace")

    async def kill(self) -> None:
        """SIGKILL, by its PID: no goodbye to the hub, the hub must notice the silence."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    def runtime(self) -> RuntimeInfo:
        return read_runtime(self.workdir / ".rosey")


class Cluster:
    def __init__(self, hub: RunningRosey, host: Host) -> None:
        self.hub = hub
        self.host = host
        self.bus: EventBus | None = None  # the hub's core identity (as the CLI uses it)

    @property
    def hub_runtime(self) -> RuntimeInfo:
        return read_runtime(self.hub.workdir / ".rosey")

    async def hub_bus(self) -> EventBus:
        if self.bus is None:
            self.bus = await connect(self.hub_runtime)
        return self.bus

    async def status(self) -> dict[str, Any]:
        return await ask(await self.hub_bus(), self.hub_runtime, "status", {"history": False})

    async def rows(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in (await self.status())["plugins"]}

    async def until_status(self, check: Callable[[dict[str, Any]], T | None], timeout: float) -> T:
        """``check(status)``'s first answer that is not None: the hub's status read now and again
        after each heartbeat or host state change the hub sees (no other news changes it)."""
        bus = await self.hub_bus()
        news = asyncio.Event()

        async def heard(_event: Event) -> None:
            news.set()

        subscriptions = [await bus.subscribe(subject, heard) for subject in HOST_NEWS]
        await bus.flush()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    news.clear()
                    found = check(await self.status())
                    if found is not None:
                        return found
                    await news.wait()
        finally:
            for subscription in subscriptions:
                await subscription.unsubscribe()

    async def wait_host_label(self, plugin: str, label: str, timeout: float = 15.0) -> dict[str, Any]:
        """Until the hub's status shows ``plugin`` with HOST ``label``."""

        def labelled(status: dict[str, Any]) -> dict[str, Any] | None:
            row = next((r for r in status["plugins"] if r["name"] == plugin), {})
            return row if row.get("host") == label else None

        return await self.until_status(labelled, timeout)


async def start_cluster(tmp_path: Path, launcher: str | None = None, hub_extra: str = "") -> Cluster:
    hub_dir, host_dir = tmp_path / "hub", tmp_path / "host"
    hub_dir.mkdir()
    host_dir.mkdir()
    (hub_dir / "rosey.toml").write_text(HUB_TOML + hub_extra)
    hub = await start_run(hub_dir)
    state = hub_dir / ".rosey" / "hosts"
    # The operator copies the credentials file the hub wrote (0600) to the host.
    shutil.copy(state / "b.credentials", host_dir / "b.credentials")
    (host_dir / "b.credentials").chmod(0o600)
    (host_dir / "rosey.toml").write_text(host_toml((state / "leaf_url").read_text().strip()))
    host = Host(host_dir, launcher)
    try:
        await host.start()
    except BaseException:
        hub.proc.kill()
        await hub.proc.wait()
        raise
    return Cluster(hub, host)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    running = await start_cluster(tmp_path)
    try:
        yield running
    finally:
        await stop_cluster(running)


async def stop_cluster(running: Cluster) -> None:
    if running.bus is not None:
        with contextlib.suppress(Exception):
            await running.bus.disconnect()
    for proc in (running.host.proc, running.hub.proc):
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
