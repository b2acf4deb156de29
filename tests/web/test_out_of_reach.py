"""A plugin cannot reach the web surface: its sandbox lets it connect to the NATS port alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.rosey.plugins.sandbox.probe import probe
from tests.cli.conftest import rosey, start_run

from .conftest import get, web_url

pytestmark = pytest.mark.timeout(60)

PROBER = """
import errno
import socket

from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class Prober(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "prober"

    async def handle_command(self, event: Event) -> None:
        port = int(event.data["args"][0])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3):
                outcome = "connected"
        except OSError as exc:
            outcome = "refused " + errno.errorcode.get(exc.errno or 0, str(exc))
        await self.publish_result({"message": outcome}, event.correlation_id)


if __name__ == "__main__":
    run_plugin(Prober)
"""


async def test_a_plugin_cannot_connect_to_the_web_port(tmp_path: Path) -> None:
    support = probe()
    if not support.get("landlock_abi") or support["landlock_abi"] < 4:
        pytest.skip(f"this kernel has no Landlock network rules (ABI >= 4): {support.get('landlock_abi')}")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "prober.py").write_text(PROBER)
    bot = await start_run(tmp_path)
    try:
        url = web_url(bot)
        assert (await get(f"{url}/healthz")).status_code == 200  # reachable from the host
        port = url.rsplit(":", 1)[1]
        code, out, err = await rosey("send", "prober", port, "--json", cwd=tmp_path)
        assert code == 0, err
        assert json.loads(out)["message"] == "refused EACCES", out  # Landlock, not a closed port
    finally:
        bot.proc.terminate()
        await bot.proc.wait()
