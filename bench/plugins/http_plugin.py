"""The gateway benchmark's plugin: times ``self.http.get`` against a direct httpx request.

Both requests start in this plugin process, to the same loopback server, in alternating blocks;
only the gateway's leg crosses NATS to the host. Started without the sandbox (a direct request
needs the network, which a sandboxed plugin does not have).
"""

import os
import time

import httpx

from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class HttpBenchPlugin(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return os.environ.get("ROSEY_PLUGIN_NAME", "gw")

    async def handle_command(self, event: Event) -> None:
        url, rounds, block = str(event.data["args"][0]), *(int(a) for a in event.data["args"][1:3])
        clock = time.perf_counter
        samples: dict[str, list[float]] = {"gateway": [], "direct": []}
        async with httpx.AsyncClient(trust_env=False) as client:

            async def direct() -> None:
                response = await client.get(url)
                if response.status_code != 200:
                    raise RuntimeError(f"direct: {response.status_code}")

            async def gateway() -> None:
                response = await self.http.get(url)
                if response.status != 200:
                    raise RuntimeError(f"gateway: {response.status}")

            ops = {"gateway": gateway, "direct": direct}
            for op in ops.values():  # warm-up: connections, imports, caches
                for _ in range(50):
                    await op()
            for i in range(rounds):
                for name in ("gateway", "direct") if i % 2 == 0 else ("direct", "gateway"):
                    for _ in range(block):
                        t0 = clock()
                        await ops[name]()
                        samples[name].append(clock() - t0)
        await self.publish_result(samples, event.correlation_id)


if __name__ == "__main__":
    run_plugin(HttpBenchPlugin)
