"""The storage service's JetStream side: one bucket per plugin, and the calls on the hot path.

:func:`ensure_bucket` creates a plugin's bucket (a standard KV stream, ``KV_rosey_<plugin>``)
or brings its limits to the configured ones without ever deleting data.

The two calls on the hot path go without nats-py's JetStream layer:

``direct_get`` (``$JS.API.DIRECT.GET.<stream>.<subject>``: no consumer, answered by the server
from the stream) and ``publish`` (a message on the bucket's subject, acknowledged by JetStream)
go through one reply subscription and a future per call, with the timeout as one
``call_later`` — as :class:`~bot.rosey.core.event_bus.EventBus` does for requests. nats-py's
``request()`` costs an extra task and ``wait_for`` per call, and its JetStream wrappers parse
more than needed; on this path that was most of the service's own time (bench/storage.py).
Everything else (creating buckets, stream info, purge) uses nats-py's JetStream API.
"""

from __future__ import annotations

import asyncio
import json
import logging

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.client import JetStreamContext

from bot.rosey.core.events import new_id
from bot.rosey.core.subjects import validate_plugin_name
from bot.rosey.errors import StorageError
from bot.rosey.storage_config import StorageLimits

logger = logging.getLogger(__name__)

# The stream's max_msg_size is the value limit plus room for the headers (TTL, expected revision).
HEADER_ROOM = 512


def bucket_name(plugin: str) -> str:
    """The KV bucket of ``plugin``: ``rosey_<plugin>``."""
    return f"rosey_{validate_plugin_name(plugin)}"


def stream_name(plugin: str) -> str:
    """The JetStream stream behind the bucket: ``KV_rosey_<plugin>``."""
    return f"KV_{bucket_name(plugin)}"


__all__ = [
    "HEADER_ROOM",
    "JetStreamWire",
    "bucket_name",
    "ensure_bucket",
    "jetstream_error",
    "stream_name",
]


def jetstream_error(description: str, *, err_code: int = 0, code: int = 0) -> StorageError:
    """JetStream refused a call: ``err_code`` (10054, 10071, 10077...) in ``details``; 0 when
    no answer came. The service turns it into the plugin's error (``StorageService._write_error``)."""
    return StorageError(description, service="storage", err_code=err_code, code=code)


def _expire(future: asyncio.Future[Msg]) -> None:
    if not future.done():
        future.set_exception(jetstream_error("no answer from JetStream in time"))


class JetStreamWire:
    """Direct gets and acknowledged publishes on ``nc`` (a core connection)."""

    def __init__(self, nc: Client, *, timeout: float = 10.0) -> None:
        self._nc = nc
        self.timeout = timeout
        self._prefix = f"_INBOX.{new_id()}."
        self._futures: dict[str, asyncio.Future[Msg]] = {}
        self._seq = 0
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)
            self._started = True

    async def direct_get(self, stream: str, subject: str) -> tuple[bytes, int] | None:
        """The last value on ``subject`` and its sequence (the key's revision), or None."""
        msg = await self._call(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", None)
        headers = msg.headers or {}
        status = headers.get("Status")
        if status == "404":
            return None
        if status:
            raise jetstream_error(headers.get("Description") or f"status {status}", code=int(status))
        return msg.data, int(headers.get("Nats-Sequence", "0"))

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> int:
        """Store ``payload`` on ``subject``; the stream sequence, or the refusal (:func:`jetstream_error`)."""
        msg = await self._call(subject, payload, headers)
        if msg.headers and msg.headers.get("Status") == "503":
            raise jetstream_error("no stream listens on this subject", code=503)
        ack = json.loads(msg.data)
        if "error" in ack:
            error = ack["error"]
            raise jetstream_error(
                str(error.get("description", "")),
                err_code=int(error.get("err_code", 0)),
                code=int(error.get("code", 0)),
            )
        return int(ack["seq"])

    async def _call(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> Msg:
        loop = asyncio.get_running_loop()
        self._seq += 1
        token = str(self._seq)
        future: asyncio.Future[Msg] = loop.create_future()
        self._futures[token] = future
        expiry = loop.call_later(self.timeout, _expire, future)
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            return await future
        finally:
            expiry.cancel()
            self._futures.pop(token, None)

    async def _on_reply(self, msg: Msg) -> None:
        future = self._futures.pop(msg.subject[len(self._prefix) :], None)
        if future is not None and not future.done():
            future.set_result(msg)


async def ensure_bucket(js: JetStreamContext, plugin: str, limits: StorageLimits) -> StreamInfo:
    """Create the bucket, or bring an existing one's limits to the configured ones.

    A limit is never lowered below what is stored now: the server would make room by
    deleting data, so the old limit stays, with a warning, until the plugin is under it.
    """
    name = stream_name(plugin)
    config = StreamConfig(
        name=name,
        description=f"Rosey storage of plugin {plugin}",
        subjects=[f"$KV.{bucket_name(plugin)}.>"],
        max_msgs_per_subject=1,
        max_msgs=limits.max_keys,
        max_bytes=limits.max_bytes,
        max_msg_size=limits.max_value_bytes + HEADER_ROOM,
        discard=DiscardPolicy.NEW,
        storage=StorageType.FILE,
        num_replicas=1,
        allow_rollup_hdrs=False,  # nobody may purge a whole bucket with one header
        deny_delete=True,
        allow_direct=True,
        allow_msg_ttl=True,
    )
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        info = await js.add_stream(config)
        logger.info("created storage bucket %s for plugin %s", bucket_name(plugin), plugin)
    else:
        current = info.config
        max_msgs, max_bytes = limits.max_keys, limits.max_bytes
        if info.state.messages > max_msgs:
            logger.warning(
                "plugin %s stores %d keys, over its max_keys %d: the limit stays %s until it has fewer",
                plugin,
                info.state.messages,
                max_msgs,
                current.max_msgs,
            )
            max_msgs = current.max_msgs or info.state.messages
        if info.state.bytes > max_bytes:
            logger.warning(
                "plugin %s stores %d bytes, over its max_bytes %d: the limit stays %s until it has less",
                plugin,
                info.state.bytes,
                max_bytes,
                current.max_bytes,
            )
            max_bytes = current.max_bytes or info.state.bytes
        wanted = (max_msgs, max_bytes, config.max_msg_size, True)
        have = (current.max_msgs, current.max_bytes, current.max_msg_size, bool(current.allow_msg_ttl))
        if wanted != have:
            config.max_msgs, config.max_bytes = max_msgs, max_bytes
            info = await js.update_stream(config)
    return info
