"""Shared by the dashboard's tests: a plugin that grows and prints on command, the operator token
and URL of a running bot, and requests with the headers a browser (or an attacker) would send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.cli.conftest import RunningRosey, rosey

#: ``grow N``: keep N more MB (touched, so resident); ``say TEXT``: print TEXT on stdout.
HOG = """
import sys

from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin

KEPT = []


class {cls}(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "{name}"

    async def handle_command(self, event: Event) -> None:
        args = event.data.get("args") or []
        if args[:1] == ["grow"]:
            KEPT.append(bytearray(b"x" * (int(args[1]) * 1024 * 1024)))
            message = "kept %d MB" % sum(len(b) // (1024 * 1024) for b in KEPT)
        elif args[:1] == ["say"]:
            print(" ".join(args[1:]), flush=True)
            message = "said"
        else:
            message = "ok"
        await self.publish_result({{"message": message}}, event.correlation_id)


if __name__ == "__main__":
    run_plugin({cls})
"""


def write_hog(plugins: Path, name: str) -> None:
    plugins.mkdir(exist_ok=True)
    (plugins / f"{name}.py").write_text(HOG.format(cls=name.capitalize(), name=name))


def runtime(bot: RunningRosey) -> dict[str, Any]:
    data = json.loads((bot.workdir / ".rosey" / "runtime.json").read_text())
    assert isinstance(data, dict)
    return data


def base_url(bot: RunningRosey) -> str:
    url = runtime(bot)["web_url"]
    assert isinstance(url, str)
    return url


def token(bot: RunningRosey) -> str:
    value = runtime(bot)["operator_token"]
    assert isinstance(value, str) and len(value) >= 32
    return value


async def plugin_row(bot: RunningRosey, name: str) -> dict[str, Any]:
    status = await bot.status()
    row = next(p for p in status["plugins"] if p["name"] == name)
    assert isinstance(row, dict)
    return row


async def send(bot: RunningRosey, *args: str) -> str:
    code, out, err = await rosey("send", *args, cwd=bot.workdir)
    assert code == 0, (out, err)
    return out


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=30.0)
