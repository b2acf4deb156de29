"""The files benchmark's plugin: times its own uploads to the files service and reports them.

``upload SIZE N``: N uploads of SIZE bytes one after another (``FilesClient.upload``: begin, the
pieces, commit; what ``send_file`` does before it answers), answering each one's latency in µs.
"""

import os
import time

from bot.rosey.core.events import Event
from bot.rosey.plugins.files_client import FilesClient
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class FilesBench(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return os.environ.get("ROSEY_PLUGIN_NAME", "filesbench")

    async def handle_command(self, event: Event) -> None:
        _, size, count = event.data.get("args", [])
        data = os.urandom(int(size))
        files = FilesClient(self._bus, self.plugin_name)
        latencies = []
        for _ in range(int(count)):
            t0 = time.perf_counter()
            await files.upload("bench.bin", data)
            latencies.append((time.perf_counter() - t0) * 1e6)
        await self.publish_result({"message": "ok", "latencies_us": latencies}, event.correlation_id)


if __name__ == "__main__":
    run_plugin(FilesBench)
