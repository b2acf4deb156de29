"""A plugin that does nothing but answer: the unit of the benchmarks. Its name comes from
the environment so that one file can run as many differently named plugins."""

import os
import sys

from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class IdlePlugin(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return os.environ.get("ROSEY_PLUGIN_NAME", "idle")

    async def handle_command(self, event: Event) -> None:
        args = event.data.get("args", [])
        if args == ["block"]:
            while True:
                pass
        if args == ["exit"]:
            sys.stdout.flush()
            os._exit(3)
        await self.publish_result({"message": " ".join(args)}, event.correlation_id)


if __name__ == "__main__":
    run_plugin(IdlePlugin)
