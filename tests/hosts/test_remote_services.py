"""s-remote: a plugin on a host works as on the hub: the hub's storage, HTTP gateway and files
services serve it with the grants of the hub's rosey.toml, the hub's ``!help`` lists its commands,
and nothing on a host reaches another plugin's services, on the hub or on another host.

One hub (`rosey run`: plugin ``keeper``) and two hosts (`rosey host` b: hostile ``spy``; c:
``far_store``), each with its own nats-server on loopback, the hosts leaf nodes of the hub. One
cluster per launcher (the hosts' supervisors fork or spawn the plugins) for the whole module.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.rosey.cli.client import connect
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.errors import RoseyError
from bot.rosey.plugins.storage_client import StorageClient
from bot.rosey.runtime import RuntimeInfo, read_runtime
from tests.cli.conftest import ROSEY, RunningRosey, rosey, start_run, user_env
from tests.gateway.http_server import LoopbackServer, start_server
from tests.hosts.conftest import DISABLED_IRC, FIXTURES
from tests.hosts.test_hosts import _as_raw_leaf

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="module")]


def hub_toml(granted: LoopbackServer) -> str:
    return f"""\
[rosey]
command_timeout = 30.0
entry_points = false
plugin_dirs = []

[hub]
leaf_listen = "127.0.0.1:0"

[hosts.b]
plugins = ["spy"]

[hosts.c]
plugins = ["far_store"]

[plugins.keeper]
path = "{FIXTURES / "keeper.py"}"

[plugins.keeper.http]
allow = [{{ url = "{granted.url("/keeper/")}", allow_private = true }}]

# far_store runs on host c: what the hub applies to it is said here, not in c's file.
[plugins.far_store.http]
allow = [{{ url = "{granted.url("/far/")}", allow_private = true }}]

[plugins.far_store.files]
max_bytes = 4096

{DISABLED_IRC}
[web]
enabled = false
"""


def host_toml(name: str, leaf_url: str, plugin: str) -> str:
    return f"""\
[rosey]
entry_points = false
plugin_dirs = []

[host]
name = "{name}"
hub = "{leaf_url}"
credentials = "{name}.credentials"

[plugins.{plugin}]
path = "{FIXTURES / f"{plugin}.py"}"
"""


class RemoteHost:
    """A `rosey host NAME` process in its own directory."""

    def __init__(self, name: str, workdir: Path, launcher: str) -> None:
        self.name = name
        self.workdir = workdir
        self.launcher = launcher
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with (self.workdir / "rosey-host.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *ROSEY,
                "host",
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env={**user_env(), "ROSEY_LAUNCHER": self.launcher},
            )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line.startswith(f"Rosey host {self.name} ready".encode()):
            os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
            log_text = (self.workdir / "rosey-host.log").read_text(errors="replace")
            raise AssertionError(f"rosey host {self.name} did not get ready: {line!r}\n{log_text}")

    def runtime(self) -> RuntimeInfo:
        return read_runtime(self.workdir / ".rosey")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                os.kill(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()


class Remote:
    def __init__(self, hub: RunningRosey, hosts: dict[str, RemoteHost], granted: LoopbackServer) -> None:
        self.hub = hub
        self.hosts = hosts
        self.granted = granted  # the URL rules of the hub's rosey.toml point here
        self.other = start_server()  # granted to nobody
        self.bus: EventBus | None = None
        self.replies: asyncio.Queue[str] = asyncio.Queue()

    @property
    def hub_dir(self) -> Path:
        return self.hub.workdir

    async def send(self, plugin: str, *args: str) -> dict[str, Any]:
        code, out, err = await rosey("send", plugin, *args, "--json", cwd=self.hub_dir, timeout=60)
        assert code == 0, (plugin, args, out, err)
        answer: dict[str, Any] = json.loads(out)
        return answer

    async def say(self, text: str) -> str:
        """A chat line through the hub's relay and router, as adapter irc says it."""
        if self.bus is None:
            self.bus = await connect(read_runtime(self.hub_dir / ".rosey"))

            async def on_reply(event: Event) -> None:
                await self.replies.put(str(event.data.get("text")))

            await self.bus.subscribe("rosey.chat.irc.send", on_reply)
            await self.bus.flush()
        line = {"channel": "#rosey", "user": {"id": "op", "name": "op"}, "text": text}
        await self.bus.publish("rosey.adapters.irc.events.message", line, "test")
        return await asyncio.wait_for(self.replies.get(), 20)

    async def status(self) -> dict[str, Any]:
        code, out, err = await rosey("status", "--json", cwd=self.hub_dir)
        assert code == 0, err
        status: dict[str, Any] = json.loads(out)
        return status

    async def wait_connected(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                rows = {row["name"]: row for row in (await self.status())["plugins"]}
                if all(rows.get(p, {}).get("host") == h for p, h in (("spy", "b"), ("far_store", "c"))):
                    return
                await asyncio.sleep(0.3)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["zygote", "spawn"])
async def remote(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Remote]:
    launcher: str = request.param
    base = tmp_path_factory.mktemp(f"remote-{launcher}")
    granted = start_server()
    hub_dir = base / "hub"
    hub_dir.mkdir()
    (hub_dir / "rosey.toml").write_text(hub_toml(granted))
    hub = await start_run(hub_dir, env={"ROSEY_LAUNCHER": launcher})
    hosts: dict[str, RemoteHost] = {}
    running = Remote(hub, hosts, granted)
    try:
        state = hub_dir / ".rosey" / "hosts"
        leaf_url = (state / "leaf_url").read_text().strip()
        for name, plugin in (("b", "spy"), ("c", "far_store")):
            workdir = base / name
            workdir.mkdir()
            shutil.copy(state / f"{name}.credentials", workdir / f"{name}.credentials")
            (workdir / f"{name}.credentials").chmod(0o600)
            (workdir / "rosey.toml").write_text(host_toml(name, leaf_url, plugin))
            hosts[name] = RemoteHost(name, workdir, launcher)
            await hosts[name].start()
        await running.wait_connected()
        yield running
    finally:
        if running.bus is not None:
            await running.bus.disconnect()
        for host in hosts.values():
            await host.stop()
        hub.proc.terminate()
        try:
            await asyncio.wait_for(hub.proc.wait(), 20)
        except TimeoutError:
            os.kill(hub.proc.pid, signal.SIGKILL)
            await hub.proc.wait()
        granted.close()
        running.other.close()


# ---------------------------------------------------------------------------- the services


async def test_a_remote_plugin_stores_in_the_hubs_storage(remote: Remote) -> None:
    assert (await remote.send("far_store", "put", "color", "blue"))["message"] == "stored color"
    # What the hub's storage service keeps, read there (not the plugin's word).
    code, out, err = await rosey("storage", "far_store", "get", "color", cwd=remote.hub_dir)
    assert code == 0 and "blue" in out, (out, err)
    assert (await remote.send("far_store", "get", "color"))["message"] == "value: blue"
    assert "far_store" in (await remote.status())["storage"]


async def test_a_remote_plugin_fetches_through_the_hubs_gateway_with_the_hubs_grant(remote: Remote) -> None:
    answer = await remote.send("far_store", "fetch", remote.granted.url("/far/echo"))
    assert answer["message"] == "status 200", answer
    assert "/far/echo" in remote.granted.paths()  # the request reached the server
    # Another host (port) than the grant's: refused by the hub's gateway, never sent.
    answer = await remote.send("far_store", "fetch", remote.other.url("/far/echo"))
    assert answer["message"].startswith("refused"), answer
    assert remote.other.seen == []
    counters = (await remote.status())["gateway"]["far_store"]
    assert counters["completed"] >= 1 and counters["refused"] >= 1


async def test_a_remote_plugin_sends_a_file_the_hub_keeps(remote: Remote) -> None:
    answer = await remote.send("far_store", "file", "hello.txt", "hi-from-host-c")
    ref = answer["data"]["file"]
    assert ref["name"] == "hello.txt" and ref["size"] == len("hi-from-host-c")
    # The bytes crossed the leaf connection into the hub's own files directory.
    assert (remote.hub_dir / ".rosey" / "files" / ref["id"] / "hello.txt").read_bytes() == b"hi-from-host-c"


# ---------------------------------------------------------------------------- hostile


async def test_a_hostile_plugin_on_a_host_reaches_no_other_plugins_services(remote: Remote) -> None:
    """``spy`` on host b asks storage, HTTP and files in the name of ``keeper`` (on the hub) and of
    ``far_store`` (on host c): its host's server denies its own user those subjects. Effects are
    checked outside it: the others' values, the HTTP server's log, the hub's files directory."""
    assert (await remote.send("keeper", "put", "secret", "kept"))["message"] == "stored"
    assert (await remote.send("far_store", "put", "secret", "kept"))["message"] == "stored secret"
    # Its own storage works (the path is open for it): what follows is refused for the name only.
    assert (await remote.send("spy", "mine"))["message"] == "storage: done"
    for other, path in (("keeper", "/keeper/stolen"), ("far_store", "/far/stolen")):
        answer = await remote.send("spy", "steal", other, remote.granted.url(path))
        assert "done" not in answer["message"], answer
    answer = await remote.send("spy", "own", remote.granted.url("/far/spy-own"))
    assert "done" not in answer["message"], answer  # no grant of its own: the gateway refuses
    assert (await remote.send("keeper", "get", "secret"))["message"] == "value: kept"
    assert (await remote.send("far_store", "get", "secret"))["message"] == "value: kept"
    assert not [p for p in remote.granted.paths() if "stolen" in p or "spy" in p]
    assert not list((remote.hub_dir / ".rosey" / "files").glob("*/x.txt"))


async def test_the_host_process_itself_reaches_only_its_own_plugins_services(remote: Remote) -> None:
    """Host b's own core identity is unrestricted on b's server; on the hub it is held to b's
    ceiling: it may use its plugin spy's services (a host is trusted for its own plugins), never
    keeper's (the hub's) or far_store's (host c's)."""
    info = remote.hosts["b"].runtime()
    bus = EventBus(info.nats_url, user=info.user, password=info.password, inbox_prefix="_INBOX.plugin_spy")
    await bus.connect()
    try:
        await StorageClient(lambda: bus, "spy", timeout=10.0).put("from_host", "ok")
        for other in ("keeper", "far_store"):
            with pytest.raises(RoseyError):  # no answer: the request never crossed the leaf
                await StorageClient(lambda: bus, other, timeout=2.0).put("secret", "by-host-b")
    finally:
        await bus.disconnect()
    code, out, err = await rosey("storage", "spy", "get", "from_host", cwd=remote.hub_dir)
    assert code == 0 and "ok" in out, (out, err)
    assert (await remote.send("keeper", "get", "secret"))["message"] == "value: kept"
    assert (await remote.send("far_store", "get", "secret"))["message"] == "value: kept"


async def test_a_hosts_denials_are_attributed_to_it_in_status(remote: Remote) -> None:
    """A host that sends beyond its ceiling anyway (its own leaf protocol, b's credentials) is
    refused by the hub's server, and `rosey status` on the hub names host b, not c."""
    creds = json.loads((remote.hosts["b"].workdir / "b.credentials").read_text())
    leaf_url = (remote.hub_dir / ".rosey" / "hosts" / "leaf_url").read_text().strip()
    subject = "rosey.services.storage.keeper.put"
    payload = Event(subject=subject, data={"key": "secret", "value": "raw"}, source="b").to_bytes()
    answer = await _as_raw_leaf(leaf_url, creds, subject, payload)
    assert b"Permissions Violation" in answer, answer
    async with asyncio.timeout(20):  # the server's log line, then the lookup of its connection
        while True:
            hosts = (await remote.status())["hosts"]
            if hosts.get("b", {}).get("denied_by_nats"):
                break
            await asyncio.sleep(0.2)
    assert hosts["b"]["last_denied"] == f"publish {subject}"
    assert "denied_by_nats" not in hosts["c"] and "?" not in hosts
    code, out, _ = await rosey("status", cwd=remote.hub_dir)
    assert code == 0 and f"host b: 1 messages denied by NATS (last: publish {subject})" in out, out
    assert (await remote.send("keeper", "get", "secret"))["message"] == "value: kept"


# ---------------------------------------------------------------------------- !help


async def test_help_on_the_hub_lists_a_remote_plugins_commands(remote: Remote) -> None:
    async with asyncio.timeout(30):  # the host says them with its first heartbeats: ask again
        text = await remote.say("!help")
        while "!far_store put" not in text:
            await asyncio.sleep(0.5)
            text = await remote.say("!help")
    assert "!far_store put — Store a value in the hub's storage" in text
    assert "!keeper put" in text
    usage = await remote.say("!help far_store")
    assert "usage: !far_store fetch <url> — GET a URL through the hub's HTTP gateway" in usage
    # A wrong number of arguments: the SDK on host c answers with the usage line.
    wrong = await remote.say("!far_store put lonely")
    assert "usage: !far_store put <key> <value>" in wrong and "missing <value>" in wrong, wrong
    code, out, err = await rosey("plugins", "list", cwd=remote.hub_dir)
    assert code == 0, err
    assert "far_store: !far_store get <key> — Read a stored value" in out
    assert "spy: (no commands declared)" in out
