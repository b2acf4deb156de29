"""The readiness handshake between a plugin process and its runner.

The runner opens a pipe and passes its write end to the child as ``ROSEY_READY_FD``; the
plugin writes one line once it is connected, subscribed and started. Like systemd's
``sd_notify``, it costs nothing when nobody listens and needs no timer on either side.
"""

from __future__ import annotations

import asyncio
import os

__all__ = ["READY_FD_ENV", "READY_MESSAGE", "notify_ready", "watch_ready"]

READY_FD_ENV = "ROSEY_READY_FD"
READY_MESSAGE = b"READY\n"


def notify_ready() -> bool:
    """Tell the runner this process is ready; return whether anybody was listening."""
    raw = os.environ.pop(READY_FD_ENV, None)
    if not raw:
        return False
    try:
        fd = int(raw)
        os.write(fd, READY_MESSAGE)
        os.close(fd)
    except (ValueError, OSError):
        return False
    return True


def watch_ready(ready_read: int) -> asyncio.Future[bool]:
    """The runner's side: a future that becomes True when READY arrives on ``ready_read``, False
    when the pipe closes without it. Cancel the future to stop watching."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool] = loop.create_future()

    def on_readable() -> None:
        try:
            data = os.read(ready_read, len(READY_MESSAGE))
        except OSError:
            data = b""
        if not answer.done():
            answer.set_result(data == READY_MESSAGE)

    loop.add_reader(ready_read, on_readable)
    answer.add_done_callback(lambda _: loop.remove_reader(ready_read))
    return answer
