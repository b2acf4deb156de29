"""The platform side of ``fixtures/line_adapter.py``: a JSON-lines TCP server in the test's loop.

It records what the adapter says (``said``), each connection's ``hello`` (``hellos``) and probe
results, and lets a test speak as users (``event``) or drop every connection (``drop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

LINE_ADAPTER = Path(__file__).resolve().parent / "fixtures" / "line_adapter.py"


class LinePlatform:
    def __init__(self) -> None:
        self.port = 0
        self.hellos: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.said: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.probes: asyncio.Queue[str] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._by_adapter: dict[str, asyncio.StreamWriter] = {}  # the latest connection of each
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> LinePlatform:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop()
        if self._handlers:  # they end at EOF; none may be left for the loop to cancel
            await asyncio.wait(self._handlers, timeout=5)

    def drop(self) -> None:
        """Close every adapter connection (as a platform restart would)."""
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        self._by_adapter.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError, ValueError):
            while line := await reader.readline():
                data = json.loads(line)
                if "hello" in data:
                    self._by_adapter[data["hello"]] = writer
                    await self.hellos.put(data)
                elif "say" in data:
                    await self.said.put(data["say"])
                elif "probe_result" in data:
                    await self.probes.put(data["probe_result"])

    async def send(self, data: dict[str, Any], adapter: str = "line") -> None:
        writer = self._by_adapter[adapter]
        writer.write(json.dumps(data).encode() + b"\n")
        await writer.drain()

    async def event(
        self,
        text: str,
        *,
        user: str = "alice",
        roles: tuple[str, ...] = (),
        channel: str = "#main",
        kind: str = "message",
        message_id: str | None = None,
        thread_id: str | None = None,
        adapter: str = "line",
    ) -> None:
        await self.send(
            {
                "event": kind,
                "channel": channel,
                "user": {"id": user, "name": user, "roles": list(roles)},
                "text": text,
                "message_id": message_id,
                "thread_id": thread_id,
            },
            adapter,
        )

    async def next_said(self, timeout: float = 15.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.said.get(), timeout)

    async def next_hello(self, timeout: float = 20.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.hellos.get(), timeout)

    async def probe(self, probe: str, arg: str = "", timeout: float = 15.0, adapter: str = "line") -> str:
        await self.send({"probe": probe, "arg": arg}, adapter)
        return await asyncio.wait_for(self.probes.get(), timeout)

    async def order(self, probe: str, adapter: str = "line") -> None:
        """A probe that gets no answer (the adapter hangs or dies)."""
        await self.send({"probe": probe}, adapter)
