"""Bench plugin (issue 16): each command burns ~``ms`` of CPU on the plugin's own loop (default 2)."""

from __future__ import annotations

import os
import time

from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin

VERSION = 1


class CpuPlugin(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "cpu"

    async def handle_command(self, event: Event) -> None:
        args = event.data.get("args") or []
        ms = float(args[0]) if args else 2.0
        end = time.thread_time() + ms / 1000
        n = 0
        while time.thread_time() < end:  # CPU time, not wall time: a busy machine stretches it
            n += 1
        await self.publish_result(
            {"message": f"v{VERSION} {n}", "pid": os.getpid(), "version": VERSION}, event.correlation_id
        )


if __name__ == "__main__":
    run_plugin(CpuPlugin)
