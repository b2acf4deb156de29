"""The storage service: each plugin's keys and JSON values in a JetStream key-value bucket of its own.

Plugins ask on ``rosey.services.storage.<plugin>.<op>`` (get, put, delete, keys); NATS lets a
plugin publish there in its own name only, so the subject says whose bucket it is. Plugins have
no JetStream permission at all: only this service (the core identity) touches the buckets, so
no raw NATS call of a plugin reaches another plugin's data, the stream's subjects or the
JetStream API (where creating a consumer would let it deliver any stream anywhere).

One bucket per plugin, ``rosey_<plugin>`` (stream ``KV_rosey_<plugin>``: a standard KV bucket
that ``nats kv`` can read), history 1, file storage under the state directory. Quotas:

* ``max_value_bytes``: checked here before anything is sent (the stream's ``max_msg_size``,
  error 10054, is the backstop);
* ``max_keys``: the stream's ``max_msgs`` with one message per key and discard-new: the server
  refuses a new key past the limit (10077, "maximum messages exceeded") while a replacement
  of an existing key still passes;
* ``max_bytes``: the stream's ``max_bytes`` with discard-new (10077, "maximum bytes exceeded").

The server checks a write against its limits before it stores it, and a refused write changes
nothing: no quota error can corrupt what is stored. ``ttl`` is the server's own per-message TTL
(``allow_msg_ttl``, nats-server 2.11+): an expired key is removed by the server, even while Rosey
is down. ``delete`` purges the key's messages, leaving no tombstone, so a deleted key no longer
counts against ``max_keys``.

Operators reach every bucket through ``rosey.supervisor.storage`` (core identity only): ``rosey
storage NAME list|get|delete|export|import``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.client import JetStreamContext

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import StorageError, StorageQuotaExceeded
from bot.rosey.plugins.storage_client import SERVICE, encode_value, validate_key, validate_prefix
from bot.rosey.services.base import RequestService
from bot.rosey.services.plugin_requests import ConcurrentPluginRequestService
from bot.rosey.services.storage_jetstream import JetStreamWire, bucket_name, ensure_bucket, stream_name
from bot.rosey.storage_config import StorageLimits

__all__ = ["ADMIN_SUBJECT", "StorageService", "StorageUsage", "bucket_name", "stream_name"]

logger = logging.getLogger(__name__)

SOURCE = "rosey-storage"
ADMIN_SUBJECT = Subjects.supervisor("storage")
#: Requests of one plugin handled at once; more get an error at once (no queue to flood).
MAX_IN_FLIGHT_PER_PLUGIN = 256
# An export page: well under the smallest sensible max_payload.
_EXPORT_PAGE_BYTES = 256 * 1024
_USAGE_REFRESH_SECONDS = 30.0  # also catches keys the server expired (TTL) without a write
_USAGE_REFRESH_MIN_SECONDS = 1.0
_TTL_HEADER = "Nats-TTL"
_EXPECTED_HEADER = "Nats-Expected-Last-Subject-Sequence"


@dataclass(frozen=True, kw_only=True)
class StorageUsage:
    """What one plugin stores now (as the server counts it) against its limits."""

    keys: int
    bytes: int
    limits: StorageLimits

    def to_dict(self) -> dict[str, int]:
        return {"keys": self.keys, "bytes": self.bytes, **self.limits.to_dict()}


class StorageService:
    """Serves every plugin's storage requests, and the operator's, on ``bus`` (a core connection).

    ``limits``: plugin name -> its quotas; a plugin not in it (one started outside the catalog,
    e.g. by a test harness) gets the defaults. ``server`` names the NATS server in errors.
    """

    def __init__(self, bus: EventBus, limits: Mapping[str, StorageLimits], *, server: str = "NATS") -> None:
        self.bus = bus
        self.limits = dict(limits)
        self.server = server
        self._js: JetStreamContext | None = None
        self._wire: JetStreamWire | None = None
        self._buckets: set[str] = set()  # plugins whose bucket is known to exist
        self._ready: dict[str, asyncio.Future[None]] = {}  # plugin -> its bucket exists
        self._usage: dict[str, StorageUsage] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None
        self._unavailable: str | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._plugins = ConcurrentPluginRequestService(
            bus,
            SERVICE,
            {"get": self._get, "put": self._put, "delete": self._delete, "keys": self._keys},
            source=SOURCE,
            max_in_flight=MAX_IN_FLIGHT_PER_PLUGIN,
        )
        self._admin = RequestService(bus, {ADMIN_SUBJECT: self._admin_request}, source=SOURCE)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create (or check) every configured plugin's bucket, then serve requests.

        Without JetStream on the server, storage requests are refused with one line saying so;
        the rest of Rosey runs on.
        """
        self._js = self.bus.client.jetstream(timeout=10.0)
        try:
            await self._js.account_info()
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, nats.js.errors.Error) as exc:
            self._unavailable = (
                f"storage is unavailable: the NATS server at {self.server} has no JetStream "
                f"(enable it with `jetstream {{}}` in its config, or run nats-server -js): {exc!r}"
            )
            logger.warning("%s", self._unavailable)
        else:
            self._wire = JetStreamWire(self.bus.client)
            await self._wire.start()
            buckets = (self._bucket(plugin) for plugin in sorted(self.limits))
            for result in await asyncio.gather(*buckets, return_exceptions=True):
                if isinstance(result, Exception):  # one plugin's bucket; tried again on its next request
                    logger.warning("%s", result)
            self._refresher = asyncio.create_task(self._refresh_usage_forever())
        await self._plugins.start()
        await self._admin.start()

    async def stop(self) -> None:
        await self._admin.stop()
        await self._plugins.stop()
        if self._refresher is not None:
            self._stopping = True
            self._stopped.set()
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    def usage(self) -> dict[str, dict[str, int]]:
        """Plugin -> ``{keys, bytes, max_keys, max_bytes, max_value_bytes}``, as last read from the
        server (within a second of a write, and every 30 s)."""
        return {plugin: usage.to_dict() for plugin, usage in sorted(self._usage.items())}

    # ------------------------------------------------------------------ plugin operations

    async def _get(self, plugin: str, data: Mapping[str, Any]) -> dict[str, Any]:
        key = validate_key(data["key"])
        wire = await self._hot(plugin)
        try:
            got = await wire.direct_get(stream_name(plugin), _subject(plugin, key))
        except (StorageError, nats.errors.Error) as exc:
            raise self._store_error("get", plugin, exc) from exc
        if got is None:
            return {"found": False}
        return {"found": True, "value": (got[0] or b"null").decode(), "revision": got[1]}

    async def _put(self, plugin: str, data: Mapping[str, Any]) -> dict[str, Any]:
        key = validate_key(data["key"])
        text = data["value"]
        if not isinstance(text, str):
            raise StorageError("bad request: 'value' must be JSON text", service=SERVICE, key=key)
        ttl = data.get("ttl")
        revision = data.get("revision")
        return {"revision": await self._write(plugin, key, text, ttl=ttl, revision=revision)}

    async def _delete(self, plugin: str, data: Mapping[str, Any]) -> dict[str, Any]:
        key = validate_key(data["key"])
        await self._bucket(plugin)
        request = json.dumps({"filter": _subject(plugin, key)}).encode()
        try:
            msg = await self.bus.client.request(
                f"$JS.API.STREAM.PURGE.{stream_name(plugin)}", request, timeout=10
            )
            reply = json.loads(msg.data)
        except (nats.errors.Error, ValueError) as exc:
            raise self._store_error("delete", plugin, exc) from exc
        if "error" in reply:
            raise StorageError(
                f"delete of {key!r} failed: {reply['error'].get('description')}", service=SERVICE
            )
        self._changed(plugin)
        return {"deleted": int(reply.get("purged", 0)) > 0}

    async def _keys(self, plugin: str, data: Mapping[str, Any]) -> dict[str, Any]:
        prefix = validate_prefix(data.get("prefix", ""))
        keys = [k for k in await self._all_keys(plugin) if k.startswith(prefix)]
        size = sum(len(k) + 3 for k in keys)
        if size > self.bus.client.max_payload // 2:
            raise StorageError(
                f"{len(keys)} keys start with {prefix!r}: too many to list in one reply; use a longer prefix",
                service=SERVICE,
            )
        return {"keys": keys}

    # ------------------------------------------------------------------ operator requests

    async def _admin_request(self, data: Mapping[str, Any]) -> dict[str, Any]:
        plugin = str(data.get("plugin", ""))
        if plugin not in self.limits:
            known = ", ".join(sorted(self.limits)) or "none"
            raise StorageError(
                f"no plugin named {plugin!r} is configured (plugins: {known})", service=SERVICE
            )
        op = data.get("op")
        if op == "list":
            keys = await self._all_keys(plugin)
            await self._refresh(plugin)
            return {"keys": keys, "usage": self._usage[plugin].to_dict() if plugin in self._usage else {}}
        if op == "get":
            got = await self._get(plugin, {"key": data.get("key")})
            if got["found"]:
                got["value"] = json.loads(got["value"])
            return got
        if op == "delete":
            return await self._delete(plugin, {"key": data.get("key")})
        if op == "export":
            return await self._export(plugin, str(data.get("after") or ""))
        if op == "import":
            items = data.get("items")
            if not isinstance(items, Mapping):
                raise StorageError("bad request: 'items' must be an object of key -> value", service=SERVICE)
            written = 0
            for key, value in items.items():
                try:
                    key = validate_key(key)
                    await self._write(plugin, key, encode_value(key, value))
                except StorageError as exc:
                    message = f"{exc} ({written} keys of this import were written before it)"
                    raise type(exc)(message, service=SERVICE, **exc.details) from None
                written += 1
            return {"written": written}
        raise StorageError(
            f"unknown storage operation {op!r} (list, get, delete, export, import)", service=SERVICE
        )

    async def _export(self, plugin: str, after: str) -> dict[str, Any]:
        """One page of ``{key: value}`` after key ``after``, and the key to continue after (or None)."""
        items: dict[str, Any] = {}
        size = 0
        keys = [k for k in await self._all_keys(plugin) if k > after]
        for index, key in enumerate(keys):
            got = await self._get(plugin, {"key": key})
            if not got["found"]:
                continue  # expired or deleted meanwhile
            items[key] = json.loads(got["value"])
            size += len(key) + len(got["value"])
            if size >= _EXPORT_PAGE_BYTES and index + 1 < len(keys):
                return {"items": items, "next": key}
        return {"items": items, "next": None}

    # ------------------------------------------------------------------ the store

    async def _write(
        self, plugin: str, key: str, text: str, *, ttl: object = None, revision: object = None
    ) -> int:
        limits = self._limits(plugin)
        size = len(text.encode())
        if size > limits.max_value_bytes:
            raise StorageQuotaExceeded(
                f"the value for {key!r} is {size} bytes, over this plugin's max_value_bytes "
                f"({limits.max_value_bytes}); nothing was written",
                service=SERVICE,
                limit="max_value_bytes",
                size=size,
                maximum=limits.max_value_bytes,
            )
        try:
            json.loads(text)
        except ValueError:
            raise StorageError(
                f"the value for {key!r} is not valid JSON text", service=SERVICE, key=key
            ) from None
        headers: dict[str, str] = {}
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
                raise StorageError(
                    f"ttl must be a whole number of seconds >= 1, got {ttl!r}", service=SERVICE
                )
            headers[_TTL_HEADER] = str(ttl)
        if revision is not None:
            if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
                raise StorageError(f"revision must be an integer >= 0, got {revision!r}", service=SERVICE)
            headers[_EXPECTED_HEADER] = str(revision)
        wire = await self._hot(plugin)
        try:
            revision = await wire.publish(_subject(plugin, key), text.encode(), headers or None)
        except StorageError as exc:
            raise self._write_error(plugin, key, size, exc) from exc
        except nats.errors.Error as exc:
            raise self._store_error("put", plugin, exc) from exc
        self._changed(plugin)
        return revision

    def _write_error(self, plugin: str, key: str, size: int, exc: StorageError) -> StorageError:
        """The server's refusal of a write, as the plugin's typed error (nothing was stored)."""
        limits = self._limits(plugin)
        description = str(exc).lower()
        err_code = exc.details.get("err_code")
        if err_code in (10071, 10164):  # wrong last sequence: someone wrote first
            return StorageError(
                f"{key!r} was changed by another writer (compare-and-set failed)",
                service=SERVICE,
                key=key,
                conflict=True,
            )
        if err_code == 10054:
            return StorageQuotaExceeded(
                f"the value for {key!r} is over this plugin's max_value_bytes ({limits.max_value_bytes}); "
                "nothing was written",
                service=SERVICE,
                limit="max_value_bytes",
                size=size,
                maximum=limits.max_value_bytes,
            )
        if err_code == 10077 and "messages" in description:
            return StorageQuotaExceeded(
                f"this plugin already has {limits.max_keys} keys (max_keys); delete some before adding "
                f"{key!r}; nothing was written",
                service=SERVICE,
                limit="max_keys",
                maximum=limits.max_keys,
            )
        if err_code == 10077:
            return StorageQuotaExceeded(
                f"storing {key!r} would pass this plugin's max_bytes ({limits.max_bytes} bytes, counted "
                "as the server stores keys and values); nothing was written",
                service=SERVICE,
                limit="max_bytes",
                maximum=limits.max_bytes,
            )
        return self._store_error("put", plugin, exc)

    def _store_error(self, op: str, plugin: str, exc: Exception) -> StorageError:
        logger.warning("storage %s for plugin %s failed: %r", op, plugin, exc)
        return StorageError(f"storage {op} failed: {exc}", service=SERVICE)

    def _limits(self, plugin: str) -> StorageLimits:
        return self.limits.get(plugin) or StorageLimits()

    async def _hot(self, plugin: str) -> JetStreamWire:
        """The hot path's JetStream calls, once ``plugin``'s bucket exists."""
        if plugin not in self._buckets:
            await self._bucket(plugin)
        assert self._wire is not None
        return self._wire

    async def _bucket(self, plugin: str) -> JetStreamContext:
        """The JetStream context, once ``plugin``'s bucket exists (created on first need)."""
        if self._unavailable is not None or self._js is None:
            raise StorageError(self._unavailable or "the storage service is not started", service=SERVICE)
        ready = self._ready.get(plugin)
        if ready is None:
            ready = self._ready[plugin] = asyncio.ensure_future(self._ensure_bucket(plugin, self._js))
        try:
            await asyncio.shield(ready)
        except Exception as exc:
            if self._ready.get(plugin) is ready:
                del self._ready[plugin]  # try again on the next request
            # E.g. an operator's server whose account has too little JetStream storage for max_bytes.
            raise StorageError(
                f"storage for plugin {plugin!r} is unavailable: its bucket could not be created or "
                f"updated on {self.server}: {exc}",
                service=SERVICE,
            ) from exc
        self._buckets.add(plugin)
        return self._js

    async def _ensure_bucket(self, plugin: str, js: JetStreamContext) -> None:
        limits = self._limits(plugin)
        info = await ensure_bucket(js, plugin, limits)
        self._usage[plugin] = StorageUsage(keys=info.state.messages, bytes=info.state.bytes, limits=limits)

    async def _all_keys(self, plugin: str) -> list[str]:
        js = await self._bucket(plugin)
        prefix = f"$KV.{bucket_name(plugin)}."
        try:
            info = await js.stream_info(stream_name(plugin), subjects_filter=f"{prefix}>")
        except (nats.js.errors.Error, nats.errors.Error) as exc:
            raise self._store_error("keys", plugin, exc) from exc
        subjects = info.state.subjects or {}
        return sorted(subject[len(prefix) :] for subject, count in subjects.items() if count)

    # ------------------------------------------------------------------ usage for `rosey status`

    def _changed(self, plugin: str) -> None:
        self._dirty.add(plugin)
        self._wake.set()

    async def _refresh(self, plugin: str) -> None:
        js = await self._bucket(plugin)
        info = await js.stream_info(stream_name(plugin))
        self._usage[plugin] = StorageUsage(
            keys=info.state.messages, bytes=info.state.bytes, limits=self._limits(plugin)
        )

    async def _refresh_usage_forever(self) -> None:
        """Re-read the usage of plugins that wrote (one stream info per plugin per burst of writes)."""
        while not self._stopping:
            # Not wait_for: on 3.11 it can swallow a cancel that meets a wake-up, and never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_USAGE_REFRESH_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            # Writes come in bursts: one stream info per second at most, not one per write.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_USAGE_REFRESH_MIN_SECONDS):
                    await self._stopped.wait()
            if self._stopping:
                return
            plugins = set(self._dirty) if self._dirty else set(self._usage)
            self._dirty.clear()
            for plugin in plugins:
                try:
                    await self._refresh(plugin)
                except Exception as exc:  # a hiccup of the server: the next write tries again
                    logger.debug("storage usage of %s not refreshed: %r", plugin, exc)


def _subject(plugin: str, key: str) -> str:
    return f"$KV.{bucket_name(plugin)}.{key}"
