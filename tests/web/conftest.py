"""The web surface of a real `rosey run`: plugin files, the URL from the runtime file, HTTP helpers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.cli.conftest import RunningRosey

PLUGIN = """
import os
import time
from pathlib import Path

from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class {cls}(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "{name}"

    async def on_start(self) -> None:
{on_start}

    async def handle_command(self, event: Event) -> None:
        args = event.data.get("args") or []
        if args and args[0] == "fail":
            raise RuntimeError("asked to fail")
        if args and args[0] == "spin":  # 50 ms of CPU: more than one clock tick, whatever the host
            began = time.process_time()
            while time.process_time() - began < 0.05:
                pass
        await self.publish_result({{"message": "ok " + " ".join(args)}}, event.correlation_id)


if __name__ == "__main__":
    run_plugin({cls})
"""

#: Raises on its first start (marking its data dir), starts fine on the next.
FAILS_ONCE = """\
        marker = Path(os.environ["ROSEY_DATA_DIR"]) / "failed-once"
        if not marker.exists():
            marker.write_text("x")
            raise RuntimeError("first start fails on purpose")"""


def write_plugin(plugins: Path, name: str, on_start: str = "        pass") -> None:
    plugins.mkdir(exist_ok=True)
    (plugins / f"{name}.py").write_text(PLUGIN.format(cls=name.capitalize(), name=name, on_start=on_start))


def web_url(bot: RunningRosey) -> str:
    """The URL the ready line printed, checked against the runtime file's."""
    runtime = json.loads((bot.workdir / ".rosey" / "runtime.json").read_text())
    url = runtime["web_url"]
    assert isinstance(url, str) and f"; web {url}." in bot.ready_line, (url, bot.ready_line)
    return url


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10.0) as client:
        return await client.get(url)
