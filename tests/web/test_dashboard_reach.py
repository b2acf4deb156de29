"""A sandboxed plugin cannot use the dashboard: it can neither read the operator token (the
runtime file) nor connect to the web port to restart another plugin, under either launcher.
Checked by the effect: the other plugin's process is the same one afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.rosey.plugins.sandbox.probe import probe
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
