"""The files service: a plugin's file, stored briefly, handed to the adapter of the chat it answers.

Plugins upload on ``rosey.services.files.<plugin>.begin|put|commit`` (see
:mod:`bot.rosey.plugins.files_client`); NATS lets a plugin use only its own name there, so the
subject says whose file it is. Only bytes travel: the service names the stored file itself,
``<state>/files/<random id>/<sanitised name>`` (a fresh directory per file, created with
``O_EXCL``/``O_NOFOLLOW``), so no name a plugin sends (``../../etc/passwd``) can point anywhere
else. Limits per plugin (``[plugins.NAME.files]``): ``max_bytes`` per file, checked at ``begin``
before any byte is uploaded and again on every piece; ``max_pending`` files waiting at once.

The router, in-process, *claims* a file named in a plugin's answer (:meth:`FilesService.claim`):
only a committed file of that same plugin, not expired and not claimed before, and only for the
one adapter the answer goes to. That adapter alone may then read it on
``rosey.services.files.<adapter>.fetch`` (plugins are denied that subject by NATS, and the
service serves ``fetch`` to adapter names only), until it releases the file or it expires.
Nobody fetches by path, and an unknown, expired or foreign id is refused.

Expiry: a file (or an unfinished upload) nobody fetched is deleted ``expire_seconds`` after it
was begun (default 1 h), by a sweep that runs every ``sweep_seconds`` and at start; at start
everything left under ``<state>/files`` by an earlier run is deleted (no answer can name it any
more), except the console's saved files (``<state>/files/console/``).

The console (in ``rosey run``, the core's identity) asks ``rosey.supervisor.files`` (core only)
to *save* a file it was sent: it moves to ``<state>/files/console/<id>/<name>`` and stays there
for the operator to open.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import mimetypes
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.rosey.broker.identities import adapter_user, plugin_user
from bot.rosey.core.chat import MAX_FILE_NAME_CHARS, MIME_TYPE, FileRef, clean_text
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import FileTooLarge, ServiceError
from bot.rosey.files_config import FileLimits
from bot.rosey.plugins.files_client import SERVICE
from bot.rosey.services.base import PluginRequestService, RequestHandler, RequestService

__all__ = ["ADMIN_SUBJECT", "CONSOLE_DIR", "FilesService", "safe_name"]

logger = logging.getLogger(__name__)

SOURCE = "rosey-files"
ADMIN_SUBJECT = Subjects.supervisor("files")
#: Where the console's files are kept for the operator (never swept).
CONSOLE_DIR = "console"
DEFAULT_SWEEP_SECONDS = 60.0
_ID = re.compile(r"[0-9a-f]{32}")
# What a file name may not hold: path separators, and what platforms and file systems refuse.
_UNSAFE = re.compile(r'[/\\:*?"<>|]')


def safe_name(name: object) -> str:
    """``name`` as one harmless file name: no separators, no control characters, no leading dot."""
    text = clean_text(name if isinstance(name, str) else "", max_chars=1000, newlines=False)
    text = _UNSAFE.sub("_", text).strip().lstrip(".").strip()
    if len(text) > MAX_FILE_NAME_CHARS:
        suffix = Path(text).suffix[:16]
        text = text[: MAX_FILE_NAME_CHARS - len(suffix)].rstrip() + suffix
    return text or "file"


@dataclass(kw_only=True)
class _File:
    id: str
    plugin: str
    name: str
    mime: str
    size: int
    path: Path
    expires: float  # time.monotonic()
    received: int = 0
    committed: bool = False
    platform: str | None = None  # the adapter it was claimed for

    @property
    def ref(self) -> FileRef:
        return FileRef(id=self.id, name=self.name, mime=self.mime, size=self.size)


class _Requests(PluginRequestService):
    """Plugin requests (begin, put, commit) and adapter requests (fetch) on ``rosey.services.files.*.*``,
    each answered only into the asker's own inbox (a plugin's, or the adapter's)."""

    def __init__(self, bus: EventBus, service: FilesService) -> None:
        super().__init__(
            bus,
            SERVICE,
            {
                "begin": service._begin,
                "put": service._put,
                "commit": service._commit,
                "fetch": service._fetch,
            },
            source=SOURCE,
        )
        self._files = service

    def _serve(self, handler: RequestHandler) -> Callable[[Event], Awaitable[None]]:
        async def serve(event: Event) -> None:
            parsed = Subjects.service_plugin(event.subject)
            if parsed is None or not event.reply:
                return
            name, op = parsed
            adapter = name in self._files.adapters
            if not _own_inbox(name, event.reply, adapter=adapter):
                logger.warning("files: dropped a request of %s with reply subject %r", name, event.reply)
                return
            if (op == "fetch") != adapter:
                who = "adapters" if op == "fetch" else "plugins"
                message = f"files: {op!r} is for {who} only"
                logger.warning("files: refused %s from %s (%s)", op, name, message)
                await self._answer(event, lambda: _refuse(message))
                return
            op_handler = self._ops.get(op)
            if op_handler is None:
                known = ", ".join(sorted(self._ops))
                await self._answer(
                    event, lambda: _refuse(f"the files service has no operation {op!r} ({known})")
                )
                return
            await self._answer(event, lambda: op_handler(name, event.data))

        return serve


def _own_inbox(name: str, reply: str, *, adapter: bool) -> bool:
    parts = reply.split(".")
    if len(parts) < 3 or parts[0] != "_INBOX":
        return False
    owner = parts[1]
    if owner.startswith(("plugin_", "adapter_", "rosey_")):
        return owner == (adapter_user(name) if adapter else plugin_user(name))
    return True  # a server without per-identity inboxes (a test harness): everyone reads everything


async def _refuse(message: str) -> dict[str, Any]:
    raise ServiceError(message, service=SERVICE)


class FilesService:
    """Stores plugins' files under ``root`` (``<state>/files``) for the adapters that send them.

    ``limits``: plugin -> its :class:`FileLimits` (others get the defaults); ``adapters``: the
    names of the adapter processes (the only names ``fetch`` is served to).
    """

    def __init__(
        self,
        bus: EventBus,
        root: Path,
        limits: Mapping[str, FileLimits],
        adapters: Collection[str],
        *,
        sweep_seconds: float = DEFAULT_SWEEP_SECONDS,
    ) -> None:
        self.bus = bus
        self.root = Path(root)
        self.limits = dict(limits)
        self.adapters = frozenset(adapters)
        self.sweep_seconds = sweep_seconds
        self._files: dict[str, _File] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: Set after each sweep (tests wait on it); ``sweeps`` counts them, ``expired`` the files removed.
        self.swept = asyncio.Condition()
        self.sweeps = 0
        self.expired = 0
        self._requests = _Requests(bus, self)
        self._admin = RequestService(bus, {ADMIN_SUBJECT: self._admin_request}, source=SOURCE)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._remove_leftovers()
        await self._requests.start()
        await self._admin.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="files-sweep")

    async def stop(self) -> None:
        await self._admin.stop()
        await self._requests.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def status(self) -> dict[str, int]:
        """Files waiting (stored or uploading) and their bytes."""
        return {"pending": len(self._files), "bytes": sum(f.received for f in self._files.values())}

    # ------------------------------------------------------------------ plugin operations

    async def _begin(self, plugin: str, data: Mapping[str, Any]) -> dict[str, Any]:
        limits = self._limits(plugin)
        size = data["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ServiceError("bad request: 'size' must be an integer >= 0", service=SERVICE)
        name = safe_name(data.get("name"))
        if size > limits.max_bytes:
            raise FileTooLarge(
                f"{name} is {size} bytes, over this plugin's limit of {limits.max_bytes} bytes "
                f"([plugins.{plugin}.files] max_bytes); nothing was sent",
                service=SERVICE,
                size=size,
                limit=limits.max_bytes,
            )
        mime = self._mime(name, data.get("mime"))
        waiting = sum(1 for f in self._files.values() if f.plugin == plugin)
        if waiting >= limits.max_pending:
            raise ServiceError(
                f"this plugin has {waiting} files waiting to be sent (max_pending {limits.max_pending}); "
                "try again when they are sent or expired",
                service=SERVICE,
                limit="max_pending",
            )
        file_id = secrets.token_hex(16)
        directory = self.root / file_id
        directory.mkdir(mode=0o700)  # a fresh random directory: FileExistsError is a bug, not a race
        path = directory / name
        # Never follow a link, never reuse a file: the name is one component of a new directory.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        self._files[file_id] = _File(
            id=file_id,
            plugin=plugin,
            name=name,
            mime=mime,
            size=size,
            path=path,
            expires=time.monotonic() + limits.expire_seconds,
        )
        self._wake.set()
        return {"upload": file_id, "chunk_bytes": self.chunk_bytes()}

    async def _put(self, plugin: str, data: Mapping[str, Any]) -> dict[str, Any]:
        record = self._upload(plugin, data["upload"])
        offset = data["offset"]
        if offset != record.received:
            raise ServiceError(
                f"bad request: the next piece starts at {record.received}, not {offset!r}", service=SERVICE
            )
        try:
            piece = base64.b64decode(str(data["data"]), validate=True)
        except ValueError:
            raise ServiceError("bad request: 'data' is not base64", service=SERVICE) from None
        if record.received + len(piece) > record.size:
            self._discard(record)
            limit = self._limits(plugin).max_bytes
            raise FileTooLarge(
                f"{record.name}: more bytes than the {record.size} announced; the upload was discarded",
                service=SERVICE,
                size=record.received + len(piece),
                limit=min(record.size, limit),
            )
        fd = os.open(record.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, piece)
        finally:
            os.close(fd)
        record.received += len(piece)
        return {"received": record.received}

    async def _commit(self, plugin: str, data: Mapping[str, Any]) -> dict[str, Any]:
        record = self._upload(plugin, data["upload"])
        if record.received != record.size:
            raise ServiceError(
                f"{record.name}: {record.received} of {record.size} bytes uploaded; send the rest first",
                service=SERVICE,
            )
        record.committed = True
        logger.info("files: %s stored %s (%d bytes) as %s", plugin, record.name, record.size, record.id)
        return {"file": record.ref.to_wire()}

    def _upload(self, plugin: str, upload: object) -> _File:
        record = self._files.get(upload) if isinstance(upload, str) else None
        if record is None or record.plugin != plugin or record.committed or self._expired(record):
            raise ServiceError(f"no upload {upload!r} in progress for this plugin", service=SERVICE)
        return record

    # ------------------------------------------------------------------ the router and the adapters

    def claim(self, plugin: str, raw: object, platform: str) -> FileRef | None:
        """The file a plugin's answer names, bound to the one adapter (``platform``) it goes to.

        None unless ``raw`` names (by id) a committed, unexpired file of this same ``plugin`` that
        was not claimed before: a plugin cannot have another plugin's file sent, nor one file twice.
        The reference returned is the service's (name, type and size as stored), not the plugin's.
        """
        file_id = raw.get("id") if isinstance(raw, Mapping) else None
        record = self._files.get(file_id) if isinstance(file_id, str) else None
        if record is None or record.plugin != plugin or not record.committed or self._expired(record):
            logger.warning(
                "files: %s answered with a file that is not its own or not ready: %r", plugin, file_id
            )
            return None
        if record.platform is not None:
            logger.warning("files: %s answered twice with file %s", plugin, record.id)
            return None
        record.platform = platform
        return record.ref

    async def _fetch(self, adapter: str, data: Mapping[str, Any]) -> dict[str, Any]:
        record = self._claimed(adapter, data["id"])
        if data.get("release") is True:
            self._discard(record)
            return {"released": True}
        offset = data.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= record.size:
            raise ServiceError(f"bad request: offset must be from 0 to {record.size}", service=SERVICE)
        with open(record.path, "rb") as f:  # noqa: ASYNC230 - a local file, one piece
            f.seek(offset)
            piece = f.read(self.chunk_bytes())
        return {"data": base64.b64encode(piece).decode("ascii"), "offset": offset, "size": record.size}

    def _claimed(self, adapter: str, file_id: object) -> _File:
        record = self._files.get(file_id) if isinstance(file_id, str) else None
        if record is None or record.platform != adapter or self._expired(record):
            raise ServiceError(
                f"no file {file_id!r} waits for adapter {adapter!r} (unknown, expired, or another's)",
                service=SERVICE,
            )
        return record

    # ------------------------------------------------------------------ the console (core identity)

    async def _admin_request(self, data: Mapping[str, Any]) -> dict[str, Any]:
        if data.get("op") != "save":
            raise ServiceError(f"unknown files operation {data.get('op')!r} (save)", service=SERVICE)
        record = self._claimed(str(data.get("platform") or "console"), data.get("id"))
        target = self.root / CONSOLE_DIR / record.id
        target.mkdir(parents=True, mode=0o700)
        saved = target / record.name
        os.replace(record.path, saved)
        self._discard(record)
        return {"path": str(saved)}

    # ------------------------------------------------------------------ expiry

    def _expired(self, record: _File) -> bool:
        return time.monotonic() >= record.expires

    def _discard(self, record: _File) -> None:
        self._files.pop(record.id, None)
        shutil.rmtree(record.path.parent, ignore_errors=True)

    async def sweep(self) -> int:
        """Delete every file whose time is up; how many."""
        gone = [record for record in list(self._files.values()) if self._expired(record)]
        for record in gone:
            logger.info("files: %s's %s (%s) expired unsent; deleted", record.plugin, record.name, record.id)
            self._discard(record)
        async with self.swept:
            self.sweeps += 1
            self.expired += len(gone)
            self.swept.notify_all()
        return len(gone)

    async def _sweep_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # a new file may expire before the next sweep
                async with asyncio.timeout(self._next_sweep()):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.sweep()
            except Exception:  # a disk hiccup must not end the sweeps
                logger.exception("files: sweep failed")

    def _next_sweep(self) -> float:
        """Seconds to the next sweep: every ``sweep_seconds``, sooner when a file expires before."""
        now = time.monotonic()
        soonest = min((f.expires - now for f in self._files.values()), default=self.sweep_seconds)
        return max(0.05, min(self.sweep_seconds, soonest + 0.01))

    def _remove_leftovers(self) -> None:
        """What an earlier run stored: no answer can name it any more (the console's files stay)."""
        for entry in self.root.iterdir():
            if entry.name == CONSOLE_DIR:
                continue
            try:
                mode = entry.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode):
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()

    # ------------------------------------------------------------------ helpers

    def chunk_bytes(self) -> int:
        """The largest piece of a file in one message: base64 (4/3) and the envelope must fit."""
        max_payload = self.bus.client.max_payload
        return max(1024, (max_payload - 8192) * 3 // 4 // 3 * 3)

    def _limits(self, plugin: str) -> FileLimits:
        return self.limits.get(plugin) or FileLimits()

    @staticmethod
    def _mime(name: str, mime: object) -> str:
        if mime is None or mime == "":
            guessed, _ = mimetypes.guess_type(name, strict=False)
            return guessed or "application/octet-stream"
        if not isinstance(mime, str) or not MIME_TYPE.fullmatch(mime.strip().lower()):
            raise ServiceError(
                f"mime_type {mime!r} is not a media type like 'text/calendar'", service=SERVICE
            )
        return mime.strip().lower()
