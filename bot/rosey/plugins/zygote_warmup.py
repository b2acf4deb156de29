"""The zygote's rehearsal of a plugin's start: an event loop and a NATS connection, once.

Why (issue 17): CPython 3.11 writes into every code object it runs until that code is
"quickened" (a warm-up counter, then the specialized bytecode), and into every object it
touches (its reference count). A child of the zygote that runs the event loop and nats-py's
connect for the first time therefore copies the pages holding all that code, privately, and
pays for the quickening itself, once per plugin. Run here, in the template, those writes happen
once in pages every child then shares.

What it runs: ``asyncio.run`` of an :class:`~bot.rosey.core.events.Event` round through the
SDK's :class:`~bot.rosey.core.event_bus.EventBus` -- connect, subscribe (plain and queue),
flush, publish, a message delivered to a handler, disconnect -- against a stand-in NATS server
on a loopback port of its own that speaks just enough of the protocol (INFO, PONG, MSG), a
few times over (past the quickening threshold). No thread is started (the host is an IP
address: no resolver thread), no signal handler is installed, no logging is configured; the
listening socket accepts one connection per round and is closed before the zygote forks
anything. Nothing here is secret: no credential exists in the zygote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event

__all__ = ["rehearse"]

_ROUNDS = 10  # past 3.11's quickening threshold (8 calls) for code run once per plugin start
_SUBJECT = "rosey.commands.warmup.execute"


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A stand-in NATS server for one client: INFO, PONG to each PING, one MSG per SUB."""
    info = {"server_id": "zygote-warmup", "version": "2.10.0", "proto": 1, "max_payload": 1 << 20}
    writer.write(b"INFO " + json.dumps(info).encode() + b"\r\n")
    payload = Event(subject=_SUBJECT, source="zygote", data={"args": ["warm"]}).to_bytes()
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while line := await reader.readline():
            verb, _, rest = line.rstrip(b"\r\n").partition(b" ")
            if verb == b"PING":
                writer.write(b"PONG\r\n")
            elif verb == b"SUB":
                subject, *_, sid = rest.split(b" ")
                writer.write(b"MSG %s %s %d\r\n%s\r\n" % (subject, sid, len(payload), payload))
            elif verb in (b"PUB", b"HPUB"):
                size = int(rest.split(b" ")[-1])
                await reader.readexactly(size + 2)
            await writer.drain()
    writer.close()


async def _rounds() -> None:
    received = asyncio.Event()

    async def handler(event: Event) -> None:
        received.set()

    server = await asyncio.start_server(_serve_one, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        for _ in range(_ROUNDS):
            received.clear()
            bus = EventBus(f"nats://127.0.0.1:{port}", name="zygote-warmup", connect_timeout=2.0)
            await bus.connect()
            await bus.subscribe(_SUBJECT, handler, queue="plugin-warmup")
            await bus.subscribe(_SUBJECT + ".ping", handler)
            await bus.flush()
            await bus.publish_event(
                Event(subject="rosey.plugins.warmup.started", source="zygote", data={"n": 1})
            )
            await asyncio.wait_for(received.wait(), 2.0)
            await bus.disconnect()
    finally:
        server.close()
        await server.wait_closed()


def rehearse() -> None:
    """Run the rehearsal; a failure (no loopback, say) only costs the children the warm-up."""
    with contextlib.suppress(Exception):
        asyncio.run(_rounds())
    asyncio.set_event_loop_policy(None)  # the children start from a fresh policy, as a new process
