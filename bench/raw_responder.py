"""The raw floor for a command: a nats-py process that answers each request with its own payload.

No envelope, no SDK, no tasks: ``publish(msg.reply, msg.data)`` from the subscription callback.
Started by the benchmark as its own process; it writes ``READY`` to the fd named by
``ROSEY_READY_FD`` once subscribed and flushed, and runs until SIGTERM/SIGKILL.

    python bench/raw_responder.py --url nats://127.0.0.1:4222 --subject s [--uvloop]

Credentials come from ``NATS_USER`` / ``NATS_PASSWORD`` when set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import nats
from nats.aio.msg import Msg


async def serve(url: str, subject: str, queue: str) -> None:
    user = os.environ.get("NATS_USER") or None
    password = os.environ.get("NATS_PASSWORD") or None
    options = {"user": user, "password": password} if user else {}
    nc = await nats.connect(url, name="bench-raw-responder", **options)

    async def answer(msg: Msg) -> None:
        await nc.publish(msg.reply, msg.data)

    await nc.subscribe(subject, queue=queue, cb=answer)
    await nc.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    ready_fd = os.environ.pop("ROSEY_READY_FD", None)
    if ready_fd:
        os.write(int(ready_fd), b"READY\n")
        os.close(int(ready_fd))
    await stop.wait()
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--subject", required=True)
    parser.add_argument("--queue", default="")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(serve(args.url, args.subject, args.queue))


if __name__ == "__main__":
    main()
