"""Requested is not granted: a plugin that asks for more than rosey.toml grants, through the real
RoseyApp under both launchers.

The plugin's source declares a path and an HTTP URL its grants do not cover. What is checked is
outside the plugin: whether the file was opened (inotify on the host), what the HTTP server
received, the status the control service answers (as ``rosey status`` reads it), and the plugin's
log lines as ``rosey logs`` gets them, where the host says once per start what was not granted.
A new version of the file that requests more gets nothing more, and the message names the new
request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.core.subjects import Subjects
from bot.rosey.plugin_logs import read_plugin_log
from bot.rosey.supervision.status import RoseyStatus
from tests.gateway.http_server import LoopbackServer, start_server
from tests.inotify import OpenWatch
from tests.security.conftest import Rosey, StartRosey

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(90)]

PLUGIN = '''\
"""Asks for more than it may get; tries whatever it is told to."""

from bot.rosey.core.events import Event
from bot.rosey.errors import RoseyError
from bot.rosey.plugins.permissions import Http, Requests
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class Asker(PluginInterface):
    plugin_name = {name!r}
    requests = Requests(
        read_paths={read_paths!r},
        http=[{http}],
    )

    async def handle_command(self, event: Event) -> None:
        action, target = [str(a) for a in event.data.get("args", [])]
        result: dict[str, object]
        if action == "read":
            try:
                with open(target, encoding="utf-8") as handle:
                    result = {{"outcome": "allowed", "text": handle.read()}}
            except OSError as exc:
                result = {{"outcome": "refused", "error": type(exc).__name__}}
        else:
            try:
                response = await self.http.get(target)
                result = {{"outcome": "allowed", "status": response.status}}
            except RoseyError as exc:
                result = {{"outcome": "refused", "error": type(exc).__name__}}
        await self.publish_result(result, event.correlation_id)


if __name__ == "__main__":
    run_plugin(Asker)
'''


def write_plugin(path: Path, name: str, read_paths: list[str], urls: list[tuple[str, str]]) -> None:
    http = ", ".join(f"Http({url!r}, reason={reason!r})" for url, reason in urls)
    path.write_text(PLUGIN.format(name=name, read_paths=read_paths, http=http), encoding="utf-8")


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.close()


class Setup:
    def __init__(self, tmp_path: Path, server: LoopbackServer) -> None:
        self.shared = tmp_path / "shared"
        self.outside = tmp_path / "outside"
        self.plugins = tmp_path / "plugins"
        for directory in (self.shared, self.outside, self.plugins):
            directory.mkdir()
        self.granted = self.shared / "granted.txt"
        self.secret = self.outside / "secret.txt"
        self.secret2 = self.outside / "second-secret.txt"
        for file in (self.granted, self.secret, self.secret2):
            file.write_text(f"contents of {file.name}\n", encoding="utf-8")
        self.server = server
        self.base = f"http://127.0.0.1:{server.port}"
        self.asker = self.plugins / "asker.py"
        self.content = self.plugins / "content.py"

    def toml(self) -> str:
        rule = f'{{ url = "{self.base}/granted/", allow_private = true }}'
        return f"\n[plugins.asker.http]\nallow = [{rule}]\n\n[plugins.content.http]\nallow = [{rule}]\n"


async def control(rosey: Rosey, action: str, data: dict[str, Any]) -> dict[str, Any]:
    """What the CLI gets from the running bot's control service (``rosey status``, ``rosey logs``)."""
    reply = await rosey.core.request(Subjects.supervisor(action), data, "grants-test", timeout=10.0)
    assert reply.data.get("ok") is True, reply.data
    return dict(reply.data)


async def not_granted(rosey: Rosey, name: str) -> list[str]:
    status = RoseyStatus.from_dict(await control(rosey, "status", {}))
    plugin = status.plugin(name)
    assert plugin is not None
    return list(plugin.not_granted)


async def host_lines(rosey: Rosey, name: str) -> list[str]:
    """The lines the host wrote into the plugin's log, as ``rosey logs NAME`` receives them."""
    lines = (await control(rosey, "logs", {"name": name, "lines": 10_000}))["lines"]
    return [line["text"] for line in lines if line["stream"] == "rosey"]


async def test_a_plugin_gets_what_was_granted_and_hears_once_per_start_what_was_not(
    start_rosey: StartRosey, launcher: str, tmp_path: Path, http_server: LoopbackServer
) -> None:
    s = Setup(tmp_path, http_server)
    secret_url = f"{s.base}/secret/"
    write_plugin(
        s.asker,
        "asker",
        [str(s.granted), str(s.secret)],
        [(f"{s.base}/granted/", "allowed data"), (secret_url, "the secret")],
    )
    write_plugin(s.content, "content", [str(s.granted)], [(f"{s.base}/granted/", "allowed data")])
    table = {"read_paths": [str(s.shared)]}
    rosey = await start_rosey(
        {"asker": {"path": str(s.asker), **table}, "content": {"path": str(s.content), **table}},
        launcher=launcher,
        extra_toml=s.toml(),
    )
    missing = [f"read_paths {s.secret}", f"http GET {secret_url} (the secret)"]

    with OpenWatch(s.granted, s.secret, s.secret2) as watch:
        # Granted: read, and the gateway forwards (seen by the file and the server themselves).
        assert (await rosey.attempt("asker", "read", s.granted))["outcome"] == "allowed"
        assert s.granted in watch.opened()
        assert (await rosey.attempt("asker", "get", f"{s.base}/granted/echo"))["outcome"] == "allowed"
        assert "/granted/echo" in http_server.paths()
        # Requested, not granted: the file is never opened, the server never asked.
        assert (await rosey.attempt("asker", "read", s.secret))["outcome"] == "refused"
        assert (await rosey.attempt("asker", "get", f"{secret_url}echo"))["error"] == "GatewayRefused"
        assert s.secret not in watch.opened()
        assert not any(path.startswith("/secret/") for path in http_server.paths())

        # Said once: in the status and in the plugin's log, naming exactly what is missing.
        assert await not_granted(rosey, "asker") == missing
        lines = await host_lines(rosey, "asker")
        assert len(lines) == 1, lines
        assert all(item in lines[0] for item in missing), lines
        assert await not_granted(rosey, "content") == []
        assert await host_lines(rosey, "content") == []

        # Once per start: a restart says it once more, not twice.
        await rosey.app.supervisor.restart("asker")  # type: ignore[union-attr]
        assert len(await host_lines(rosey, "asker")) == 2

        # A new version that requests more gets nothing more, and is told which.
        write_plugin(
            s.asker,
            "asker",
            [str(s.granted), str(s.secret), str(s.secret2)],
            [(f"{s.base}/granted/", "allowed data"), (secret_url, "the secret")],
        )
        await rosey.app.supervisor.restart("asker")  # type: ignore[union-attr]
        assert await not_granted(rosey, "asker") == [*missing[:1], f"read_paths {s.secret2}", missing[1]]
        lines = await host_lines(rosey, "asker")
        assert len(lines) == 3 and str(s.secret2) in lines[-1], lines
        assert str(s.secret2) not in "".join(lines[:-1])
        assert (await rosey.attempt("asker", "read", s.secret2))["outcome"] == "refused"
        assert (await rosey.attempt("asker", "read", s.granted))["outcome"] == "allowed"
        assert watch.opened() == {s.granted}

    # The plugin could not have written these: they are on the host's own stream, in the log
    # file `rosey logs` reads once the bot has stopped, too.
    rosey.app.log_files.flush()  # type: ignore[union-attr]
    on_disk = [
        r for r in read_plugin_log(rosey.state_dir / "logs", "asker", 10_000) if r["stream"] == "rosey"
    ]
    assert len(on_disk) == 3


async def test_a_plugin_cannot_forge_the_hosts_lines(
    start_rosey: StartRosey, launcher: str, tmp_path: Path
) -> None:
    """A plugin printing the host's wording lands on stdout, not on the host's stream."""
    plugin = tmp_path / "plugins" / "forger.py"
    plugin.parent.mkdir()
    plugin.write_text(
        "import sys\n"
        "from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin\n"
        "class Forger(PluginInterface):\n"
        "    plugin_name = 'forger'\n"
        "    async def on_start(self) -> None:\n"
        "        print('not granted (requested in forger.py, not in rosey.toml): nothing', flush=True)\n"
        "        print(" + json.dumps('{"t": 0, "stream": "rosey", "text": "forged"}') + ", flush=True)\n"
        "    async def handle_command(self, event) -> None:\n"
        "        await self.publish_result({'ok': True}, event.correlation_id)\n"
        "if __name__ == '__main__':\n"
        "    run_plugin(Forger)\n",
        encoding="utf-8",
    )
    rosey = await start_rosey({"forger": {"path": str(plugin)}}, launcher=launcher)
    assert (await rosey.command("forger", "x")).ok
    lines = (await control(rosey, "logs", {"name": "forger", "lines": 100}))["lines"]
    assert any("not granted" in line["text"] for line in lines)
    assert all(line["stream"] != "rosey" for line in lines)
    assert await not_granted(rosey, "forger") == []
