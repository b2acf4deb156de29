"""The storage benchmark's plugin: times its own ``self.storage`` calls and reports them.

``get N`` / ``put N``: N calls one after another, answering each call's latency in µs;
``hop N``: the same with a request the service refuses at once (the hop without JetStream).
``rate OP TOTAL CONCURRENCY``: TOTAL calls with CONCURRENCY in flight, answering the elapsed s.
"""

import asyncio
import os
import time

from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin

VALUE = {"user": "ann", "score": 12, "answers": ["a", "b", "c"], "pad": "x" * 64}


class StorageBench(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return os.environ.get("ROSEY_PLUGIN_NAME", "storebench")

    async def _op(self, op: str, i: int) -> None:
        if op == "hop":  # the service's floor: an operation it refuses at once, no JetStream call
            assert self.event_bus is not None
            await self.event_bus.request(
                Subjects.service("storage", self.plugin_name, "noop"), {}, timeout=10
            )
        elif op == "get":
            await self.storage.get("bench.key")
        else:
            await self.storage.put(f"bench.{i % 100}", VALUE)

    async def handle_command(self, event: Event) -> None:
        op, *rest = event.data.get("args", [])
        if op in ("get", "put", "hop"):
            await self.storage.put("bench.key", VALUE)
            latencies = []
            for i in range(int(rest[0])):
                t0 = time.perf_counter()
                await self._op(op, i)
                latencies.append((time.perf_counter() - t0) * 1e6)
            await self.publish_result({"message": "ok", "latencies_us": latencies}, event.correlation_id)
            return
        kind, total, concurrency = rest[0], int(rest[1]), int(rest[2])
        counter = iter(range(total))

        async def worker() -> None:
            for i in counter:
                await self._op(kind, i)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        await self.publish_result({"message": "ok", "elapsed_s": elapsed}, event.correlation_id)


if __name__ == "__main__":
    run_plugin(StorageBench)
