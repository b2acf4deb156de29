"""nats-py's client with two shortcuts on Rosey's command path (issue 17).

Stock nats-py costs every message two extra event-loop iterations beyond the socket read:

* **writing**: ``publish()`` queues the bytes and wakes a flusher task, which writes them in the
  next iteration (a task step, a queue get, a drain). Here the first write of an iteration goes
  to the socket at once, and what is published later in the same iteration is written in one
  batch at the start of the next one by a plain callback. Under load that is still one socket
  write per iteration, as before; alone, a reply leaves without waiting for another iteration.
  When the socket is slow (its buffer past :data:`_WRITE_BUFFER_LIMIT`), closing, not TCP, or the
  connection is down, nats-py's own flusher does it, with its back-pressure and buffering.
* **reading**: a message is put on its subscription's queue and handed to the callback by that
  subscription's task in the next iteration. A subscription registered with :meth:`take_inline`
  is offered each message right in the read loop instead (a sync function that takes it or
  declines it); a declined message, one with headers, and every message behind one still queued
  or being handled go nats-py's way, so the order of delivery is kept.

Opt-in (``ROSEY_NATS_FASTPATH=1``, see ``EventBus.connect``): each side of a command skips an
iteration, but on a quiet machine that measured no gain in CPU or p50 over stock nats-py
(``python -m bench.fastpath_ab``: fewer messages per socket write offset the saved steps).
Only private parts of nats-py 2.x are used (``_process_msg``, ``_flush_pending``, ``_pending``,
``_subs``, ``_transport``); ``tests/core/test_nats_client.py`` pins them, so an upgrade that
moves them fails there, not in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.aio.transport import TcpTransport

__all__ = ["FastClient", "InlineHandler"]

logger = logging.getLogger(__name__)

#: Takes a message in the read loop (True) or declines it to nats-py's queue (False). Must not raise.
InlineHandler = Callable[[Msg], bool]

#: Past this many unsent bytes in the socket's buffer, writes go through nats-py's flusher, which
#: waits for the buffer to drain (the default high-water mark of asyncio's transports is 64 KiB).
_WRITE_BUFFER_LIMIT = 64 * 1024


class FastClient(Client):
    """A nats-py ``Client``; see the module docstring for what it does differently."""

    def __init__(self) -> None:
        super().__init__()
        self._inline: dict[int, InlineHandler] = {}
        self._batch_scheduled = False
        self._holding = 0

    # ---------------------------------------------------------------- reading

    def take_inline(self, subscription: NatsSubscription, handler: InlineHandler | None) -> None:
        """Offer ``subscription``'s messages to ``handler`` in the read loop (None: stop)."""
        sid = subscription._id
        if handler is None:
            self._inline.pop(sid, None)
        else:
            self._inline[sid] = handler

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        handler = self._inline.get(sid)
        if handler is not None and not headers:
            sub = self._subs.get(sid)
            # Anything still queued or being handled by the subscription's task goes first.
            if sub is not None and sub._jsi is None and sub._pending_queue._unfinished_tasks == 0:  # type: ignore[attr-defined]
                msg = self._build_message(sid, subject, reply, data, None)
                if handler(msg):
                    self.stats["in_msgs"] += 1
                    self.stats["in_bytes"] += len(data)
                    sub._received += 1
                    return
        elif handler is not None and sid not in self._subs:
            self._inline.pop(sid, None)
        await super()._process_msg(sid, subject, reply, data, headers)

    # ---------------------------------------------------------------- writing

    @contextlib.contextmanager
    def one_write(self) -> Iterator[None]:
        """Publishes inside go out in one socket write (an answer on two subjects, say)."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self._pending_data_size > 0 and not self._write_now():
                self._kick_flusher()

    async def _flush_pending(self, force_flush: bool = False) -> Any:
        if not force_flush and (self._holding or self._write_now()):
            return None  # nats-py's callers of the non-forced flush do not use its future
        return await super()._flush_pending(force_flush)

    def _writable(self) -> bool:
        transport = self._transport
        if not isinstance(transport, TcpTransport) or not self.is_connected:
            return False
        flusher = self._flusher_task
        if flusher is None or flusher.done():  # nats-py's own fallback covers that case
            return False
        socket = transport._io_writer.transport if transport._io_writer is not None else None
        return (
            socket is not None
            and not socket.is_closing()
            and socket.get_write_buffer_size() <= _WRITE_BUFFER_LIMIT
        )

    def _write_now(self) -> bool:
        """Write what is pending now when nothing else is left to run in this iteration of the
        loop, else in one batch at the start of the next; False: let nats-py's flusher do it
        (slow socket, closing, reconnecting)."""
        if self._batch_scheduled:
            return True  # the batch takes it
        if not self._writable():
            return False
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # asyncio's run queue (uvloop has none: batch)
        if ready is not None and not ready:
            self._write_pending()  # nobody else can publish before the loop waits: no batch to wait for
        else:
            self._batch_scheduled = True
            loop.call_soon(self._write_batch)
        return True

    def _write_batch(self) -> None:
        self._batch_scheduled = False
        if self._pending_data_size <= 0:
            return
        if self._writable():
            self._write_pending()
        else:  # the socket got slow or went away since: hand the rest to nats-py's flusher
            self._kick_flusher()

    def _kick_flusher(self) -> None:
        flush_queue = self._flush_queue
        if flush_queue is not None and flush_queue.empty():
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            with contextlib.suppress(asyncio.QueueFull):  # the flusher is about to run anyway
                flush_queue.put_nowait(future)

    def _write_pending(self) -> None:
        assert self._transport is not None
        pending = self._pending
        self._pending = []
        self._pending_data_size = 0
        if pending:
            self._transport.writelines(pending)
