"""Micro-benchmarks of each piece Rosey adds to a command's path, and of cheaper alternatives.

Not part of ``make bench``; the numbers behind the optimization suggestions. Each line is the
median of 7 repeats, in µs per operation, measured in this process (no I/O, no NATS).

    .venv/bin/python -m bench.micro
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import os
import statistics
import time
import timeit
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from bot.rosey.core.events import Event, new_id
from bot.rosey.core.subjects import Subjects
from bot.rosey.plugins.command_stats import CommandStats
from bot.rosey.services.router import CommandOutcome, OutcomeKind

REPEATS = 7


def per_op(stmt: Callable[[], Any], number: int = 20000) -> float:
    times = timeit.repeat(stmt, number=number, repeat=REPEATS)
    return statistics.median(times) / number * 1e6


def line(label: str, value: float, note: str = "") -> None:
    print(f"  {label:62s} {value:7.2f} µs  {note}")


# ---------------------------------------------------------------------- synchronous pieces

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_cached(event: Event) -> bytes:
    """Event.to_bytes with one module-level encoder instead of json.dumps(**kwargs) per call."""
    return _ENCODER.encode(
        {
            "v": event.version,
            "id": event.id,
            "type": event.event_type,
            "source": event.source,
            "ts": event.timestamp,
            "cid": event.correlation_id,
            "data": event.data,
        }
    ).encode()


_counter = itertools.count()
_PREFIX = os.urandom(8).hex()


def id_counter() -> str:
    return f"{_PREFIX}{next(_counter):016x}"


def sync_pieces() -> None:
    request_data = {"args": ["hi"], "user": "console", "channel": "console"}
    request = Event(
        subject="rosey.commands.rt.execute", data=request_data, source="rosey-router", correlation_id=new_id()
    )
    wire = request.to_bytes()
    result = Event(
        subject="rosey.commands.rt.result",
        data={"message": "hi", "correlation_id": request.correlation_id},
        source="plugin-rt",
        correlation_id=request.correlation_id,
    )
    print("ids (2 per command on the router: correlation id + event id; 1 on the plugin)")
    line("uuid.uuid4().hex  (new_id today)", per_op(lambda: uuid.uuid4().hex))
    line("os.urandom(16).hex()", per_op(lambda: os.urandom(16).hex()))
    line("prefix + counter (NUID-like, unique per process)", per_op(id_counter))

    print("envelope")
    line(
        "Event(...) construction (uuid4 + time.time default factories)",
        per_op(
            lambda: Event(
                subject="rosey.commands.rt.execute", data=request_data, source="r", correlation_id="c"
            )
        ),
    )
    line("Event.to_bytes()  (json.dumps with kwargs: new JSONEncoder per call)", per_op(request.to_bytes))
    line("cached JSONEncoder(...).encode(envelope).encode()", per_op(lambda: encode_cached(request)))
    line(
        "json.dumps(envelope) defaults (for scale)",
        per_op(lambda: json.dumps({"data": request_data}).encode()),
    )
    line(
        "Event.from_bytes(payload)",
        per_op(lambda: Event.from_bytes(wire, "rosey.commands.rt.execute", "_INBOX.x")),
    )
    line("json.loads(payload) alone", per_op(lambda: json.loads(wire)))
    line(
        "dataclasses.replace(event, subject=reply)  (2nd publish)",
        per_op(lambda: dataclasses.replace(result, subject="_INBOX.abc")),
    )
    line("2nd publish's to_bytes() of the same envelope", per_op(result.to_bytes))

    print("subjects and bookkeeping")
    line(
        "Subjects.plugin_command(name, action)  (2 regex validations)",
        per_op(lambda: Subjects.plugin_command("rt", "execute")),
    )
    line("f-string of a pre-validated name", per_op(lambda: f"rosey.commands.{'rt'}.execute"))
    stats = CommandStats()
    line("CommandStats.begin() + end()", per_op(lambda: stats.end(stats.begin(), failed=False)))
    pending: OrderedDict[str, str] = OrderedDict()

    def remember_and_pop() -> None:
        pending["c"] = "i"
        pending.pop("c")

    line("_reply_to[cid] = inbox; pop(cid)  (OrderedDict)", per_op(remember_and_pop))
    logger = logging.getLogger("bench.disabled")
    logger.setLevel(logging.WARNING)
    line(
        "logger.debug(...) when DEBUG is off (3 per command on the router, 1 in the plugin)",
        per_op(lambda: logger.debug("command %s %s (cid %s, timeout %gs)", "rt", ["hi"], "cid", 10.0)),
    )
    started = time.monotonic()
    line(
        "CommandOutcome(...) construction (frozen dataclass)",
        per_op(
            lambda: CommandOutcome(
                kind=OutcomeKind.RESULT,
                plugin="rt",
                message="hi",
                data={},
                correlation_id="c",
                elapsed=time.monotonic() - started,
            )
        ),
    )


# ---------------------------------------------------------------------- asyncio pieces


async def _resolved_soon() -> None:
    """An awaitable that completes on the next loop iteration, like a reply would."""
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, None)
    await fut


async def async_per_op(make: Callable[[], Any], number: int = 20000) -> float:
    samples = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(number):
            await make()
        samples.append((time.perf_counter() - t0) / number * 1e6)
    return statistics.median(samples)


async def async_pieces() -> None:
    loop = asyncio.get_running_loop()
    base = await async_per_op(_resolved_soon)
    print(f"asyncio (extra cost over awaiting a reply future directly; that costs {base:.2f} µs here)")

    async def direct() -> None:
        await _resolved_soon()

    async def router_race() -> None:
        # CoreRouter.execute: the request in its own task, raced against a crash future.
        crashed = loop.create_future()
        request = asyncio.ensure_future(_resolved_soon())
        await asyncio.wait({request, crashed}, return_when=asyncio.FIRST_COMPLETED)
        request.cancel()
        request.result()

    async def in_task() -> None:
        await asyncio.ensure_future(_resolved_soon())

    sem = asyncio.Semaphore(100)
    tasks: set[asyncio.Task[None]] = set()

    async def plugin_dispatch() -> None:
        # PluginInterface._handle_command_wrapper: semaphore, one task per command, done callback.
        await sem.acquire()

        async def run() -> None:
            try:
                await _resolved_soon()
            finally:
                sem.release()

        task = asyncio.create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await task

    async def wait_for_timeout() -> None:
        # nats-py's request: asyncio.wait_for(future, timeout) (raw pays it too)
        await asyncio.wait_for(_resolved_soon(), 10)

    semaphore = asyncio.Semaphore(100)

    async def sem_only() -> None:
        await semaphore.acquire()
        semaphore.release()

    line("plugin: Semaphore.acquire() + release(), uncontended (alone)", await async_per_op(sem_only))
    line(
        "router: ensure_future(request) + asyncio.wait({request, crashed})",
        await async_per_op(router_race) - base,
    )
    line("  of which: the request in its own task", await async_per_op(in_task) - base)
    line(
        "plugin: semaphore + create_task + done callback per command",
        await async_per_op(plugin_dispatch) - base,
    )
    line(
        "nats-py request's wait_for(timeout) (raw pays this too)", await async_per_op(wait_for_timeout) - base
    )
    line("(direct await, for reference: ~0)", await async_per_op(direct) - base)


def main() -> None:
    print(f"µs per operation, median of {REPEATS} repeats (no I/O)\n")
    sync_pieces()
    asyncio.run(async_pieces())


if __name__ == "__main__":
    main()
