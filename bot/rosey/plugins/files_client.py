"""``await self.send_file(...)``: answer a command with a file (an ICS, a CSV, a picture).

Plugin-process side. Only bytes travel: the plugin never names a path of the host. The bytes go
to the host's files service in pieces that fit one NATS message::

    rosey.services.files.<plugin>.begin   {name, mime, size}        -> {upload, chunk_bytes}
    rosey.services.files.<plugin>.put     {upload, offset, data}    -> {received}
    rosey.services.files.<plugin>.commit  {upload}                  -> {file: {id, name, mime, size}}

``begin`` is refused with :class:`~bot.rosey.errors.FileTooLarge` (``size``, ``limit``) when
the file is over the plugin's ``[plugins.NAME.files] max_bytes``: nothing is uploaded. The host
stores the file under a random id it chooses, with a sanitised name, and then the plugin
answers the command with ``{"message": caption or name, "file": {id, name, mime, size}}``;
the router hands the file to the adapter of the chat the command came from.

Adapters (never plugins: NATS denies plugins the subject) read a file's bytes with
:func:`fetch_file` on ``rosey.services.files.<adapter>.fetch``. Imports only ``core`` and
``errors``.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from bot.rosey.core.chat import FileRef
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import (
    FileTooLarge,
    NoResponders,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
)

__all__ = ["SERVICE", "FilesClient", "fetch_file", "release_file"]

SERVICE = "files"
#: The largest piece of a file in one request, whatever the server allows (base64 adds a third).
MAX_CHUNK_BYTES = 4 * 1024 * 1024

Answer = Callable[[dict[str, Any], str | None], Awaitable[None]]


class FilesClient:
    """Sends files for plugin ``plugin`` through ``bus()`` (its connected EventBus)."""

    def __init__(self, bus: Callable[[], EventBus], plugin: str, *, timeout: float = 30.0) -> None:
        self._bus = bus
        self.plugin = plugin
        self.timeout = timeout

    async def upload(self, filename: str, data: bytes, mime_type: str | None = None) -> FileRef:
        """Store ``data`` as a file named ``filename`` (the host sanitises the name); its reference."""
        if not isinstance(filename, str) or not filename.strip():
            raise ServiceError("send_file needs a file name (a non-empty string)", service=SERVICE)
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise ServiceError(
                f"send_file sends bytes, not {type(data).__name__} (encode text first: text.encode())",
                service=SERVICE,
            )
        if mime_type is not None and not isinstance(mime_type, str):
            raise ServiceError("mime_type must be a string like 'text/calendar'", service=SERVICE)
        begun = await _call(
            self._bus(),
            self.plugin,
            "begin",
            {"name": filename, "mime": mime_type, "size": len(data)},
            self.timeout,
        )
        upload = str(begun["upload"])
        chunk = max(1, min(int(begun.get("chunk_bytes") or MAX_CHUNK_BYTES), MAX_CHUNK_BYTES))
        for offset in range(0, len(data), chunk):
            piece = base64.b64encode(data[offset : offset + chunk]).decode("ascii")
            await _call(
                self._bus(),
                self.plugin,
                "put",
                {"upload": upload, "offset": offset, "data": piece},
                self.timeout,
            )
        done = await _call(self._bus(), self.plugin, "commit", {"upload": upload}, self.timeout)
        return FileRef.from_wire(done["file"])

    async def send(
        self,
        filename: str,
        data: bytes,
        *,
        answer: Answer,
        mime_type: str | None = None,
        correlation_id: str | None = None,
        caption: str | None = None,
    ) -> FileRef:
        """Upload, then answer command ``correlation_id`` with the file (``answer``: publish_result)."""
        ref = await self.upload(filename, data, mime_type)
        await answer({"message": caption or ref.name, "file": ref.to_wire()}, correlation_id)
        return ref


async def fetch_file(bus: EventBus, adapter: str, ref: FileRef, *, timeout: float = 30.0) -> bytes:
    """The bytes of ``ref``, which the router addressed to adapter ``adapter`` (piece by piece)."""
    parts: list[bytes] = []
    offset = 0
    while True:
        got = await _call(bus, adapter, "fetch", {"id": ref.id, "offset": offset}, timeout)
        piece = base64.b64decode(str(got["data"]), validate=True)
        parts.append(piece)
        offset += len(piece)
        size = int(got["size"])
        if offset >= size or not piece:
            break
    data = b"".join(parts)
    if len(data) != ref.size:
        raise ServiceError(
            f"file {ref.name}: got {len(data)} bytes of {ref.size}", service=SERVICE, id=ref.id
        )
    return data


async def release_file(bus: EventBus, adapter: str, ref: FileRef, *, timeout: float = 10.0) -> None:
    """Tell the service the file was sent (or never will be): it is deleted now, not at expiry."""
    await _call(bus, adapter, "fetch", {"id": ref.id, "release": True}, timeout)


async def _call(bus: EventBus, name: str, op: str, data: dict[str, Any], timeout: float) -> dict[str, Any]:
    subject = Subjects.service(SERVICE, name, op)
    try:
        reply = await bus.request(subject, data, f"files-{name}", timeout=timeout)
    except PayloadTooLarge as exc:
        raise FileTooLarge(
            f"a piece of the file does not fit one NATS message ({exc.sizes()})",
            service=SERVICE,
            size=exc.size,
            limit=exc.limit,
        ) from exc
    except NoResponders as exc:
        raise ServiceError(
            "the files service is not running (files need the plugin to run under `rosey run`)",
            service=SERVICE,
        ) from exc
    except RequestTimeout as exc:
        raise ServiceError(f"the files service did not answer within {timeout:g} s", service=SERVICE) from exc
    if not reply.data.get("ok"):
        raise ServiceError.from_wire(dict(reply.data))
    return dict(reply.data)
