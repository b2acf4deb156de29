"""A sandboxed plugin or chat adapter cannot use the dashboard: it can neither read the operator
token (the runtime file) nor connect to the web port to restart another plugin, nor publish on the
control subjects, under either launcher. Checked by the effect: the other plugin's process is the
same one afterwards; what the adapter obtained is what reached its platform; the NATS server's
own count of refusals."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from bot.rosey.plugins.sandbox.probe import probe
from tests.adapters.line_platform import LINE_ADAPTER, LinePlatform
from tests.cli.conftest import start_run

from .dashboard_fixtures import base_url, plugin_row, send, write_hog

pytestmark = pytest.mark.timeout(90)

INTRUDER = """
import errno
import json
import socket
from pathlib import Path

from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


def why(exc):
    return "refused " + errno.errorcode.get(exc.errno or 0, str(exc))


class Intruder(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "intruder"

    async def handle_command(self, event: Event) -> None:
        port, runtime = int(event.data["args"][0]), event.data["args"][1]
        report = {}
        token = "guess"
        try:
            token = json.loads(Path(runtime).read_text())["operator_token"]
            report["token"] = "read"
        except OSError as exc:
            report["token"] = why(exc)
        request = (
            "POST /api/plugins/victim/restart HTTP/1.1\\r\\n"
            f"Host: 127.0.0.1:{port}\\r\\nAuthorization: Bearer {token}\\r\\n"
            "Content-Length: 0\\r\\nConnection: close\\r\\n\\r\\n"
        )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(request.encode())
                report["web"] = "answered " + conn.recv(200).decode(errors="replace").split("\\r\\n")[0]
        except OSError as exc:
            report["web"] = why(exc)
        await self.publish_result({"message": json.dumps(report)}, event.correlation_id)


if __name__ == "__main__":
    run_plugin(Intruder)
"""


@pytest.mark.parametrize("launcher", ["zygote", "spawn"])
async def test_a_plugin_cannot_read_the_token_nor_restart_another_plugin(
    tmp_path: Path, launcher: str
) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "intruder.py").write_text(INTRUDER)
    write_hog(tmp_path / "plugins", "victim")
    bot = await start_run(tmp_path, env={"ROSEY_LAUNCHER": launcher})
    try:
        url = base_url(bot)
        victim = await plugin_row(bot, "victim")
        intruder = await plugin_row(bot, "intruder")
        assert intruder["launcher"] == launcher, intruder
        runtime = tmp_path / ".rosey" / "runtime.json"
        out = await send(bot, "intruder", url.rsplit(":", 1)[1], str(runtime), "--json")
        report = json.loads(json.loads(out)["message"])
        # The runtime file (the token, the core's NATS password) is not in the plugin's view.
        assert report["token"].startswith("refused"), report
        landlock = probe().get("landlock_abi") or 0
        if landlock >= 4:  # Landlock TCP rules: connect to the NATS port only
            assert report["web"] == "refused EACCES", report
        else:  # without them the port answers, but without the token nothing is done
            assert report["web"] == "answered HTTP/1.1 401 Unauthorized", report
        after = await plugin_row(bot, "victim")
        assert (after["pid"], after["restarts"]) == (victim["pid"], victim["restarts"])
    finally:
        bot.proc.terminate()
        await bot.proc.wait()


@pytest.mark.parametrize("launcher", ["zygote", "spawn"])
async def test_an_adapter_cannot_reach_the_token_the_web_port_nor_the_control_subjects(
    tmp_path: Path, launcher: str
) -> None:
    """A chat adapter (its platform library compromised) under the same rules: what it reads of the
    runtime file and gets from the web port is what it sends to its platform, checked there; its
    publish on the control subjects is refused by the NATS server: the other plugin is untouched."""
    platform = await LinePlatform().start()
    write_hog(tmp_path / "plugins", "victim")
    (tmp_path / "rosey.toml").write_text(
        f'[adapters.line]\ntype = "custom"\npath = "{LINE_ADAPTER}"\n'
        f'port = {platform.port}\nports = [{platform.port}]\ntoken_env = "LINE_TOKEN"\n'
    )
    bot = await start_run(tmp_path, env={"ROSEY_LAUNCHER": launcher, "LINE_TOKEN": "t0ken"})
    try:
        await platform.next_hello()
        url = base_url(bot)
        victim = await plugin_row(bot, "victim")
        assert (await plugin_row(bot, "line"))["launcher"] == launcher
        runtime = tmp_path / ".rosey" / "runtime.json"
        read = await platform.probe("read", str(runtime))
        assert not read.startswith("READ:"), read  # no token, no NATS password reached the platform
        assert "operator_token" not in read
        port = url.rsplit(":", 1)[1]
        if (probe().get("landlock_abi") or 0) >= 4:  # Landlock TCP rules: NATS and its platform only
            assert (await platform.probe("connect", f"127.0.0.1:{port}")).startswith("DENIED"), port
        for action in ("restart", "stop"):
            await platform.probe("publish", f"rosey.supervisor.{action}")
        # The NATS server refused both (its own count, read from its log by the bot) ...
        deadline = time.monotonic() + 15
        while ((await plugin_row(bot, "line")).get("denied_by_nats") or 0) < 2:
            assert time.monotonic() < deadline, "the server never counted the adapter's publishes"
            await asyncio.sleep(0.2)
        # ... and the plugin they aimed at is the same process, still running.
        after = await plugin_row(bot, "victim")
        assert (after["pid"], after["state"]) == (victim["pid"], "running"), (victim, after)
    finally:
        bot.proc.terminate()
        await bot.proc.wait()
        await platform.close()
