"""``self.storage``: a plugin's own keys and JSON values, kept by Rosey across restarts.

Plugin-process side: every call is one request to the host's storage service on
``rosey.services.storage.<plugin>.<op>``, a subject NATS lets only this plugin use. The plugin
has no JetStream permission of its own; the service holds the data, in a JetStream key-value
bucket of this plugin alone, and enforces the quotas before anything is written::

    count = await self.storage.update("count", lambda n: (n or 0) + 1)   # atomic
    await self.storage.put("quote:1", {"text": "...", "by": "ann"})
    quote = await self.storage.get("quote:1", default={})
    await self.storage.put("cooldown.ann", True, ttl=60)                  # gone after 60 s
    for key in await self.storage.keys("quote"):
        ...

Errors: :class:`~bot.rosey.errors.StorageQuotaExceeded` (``.limit`` names the quota:
``max_value_bytes``, ``max_keys``, ``max_bytes``; nothing was written) and
:class:`~bot.rosey.errors.StorageError` (a bad key, a value that is not JSON, the service
unreachable). Imports only the wire (``core``) and ``errors``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import (
    NoResponders,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    StorageError,
    StorageQuotaExceeded,
)

__all__ = [
    "KEY_RULE",
    "MAX_KEY_LENGTH",
    "SERVICE",
    "StorageClient",
    "encode_value",
    "validate_key",
    "validate_prefix",
]

SERVICE = "storage"
MAX_KEY_LENGTH = 256
KEY_RULE = (
    f"1 to {MAX_KEY_LENGTH} characters among letters, digits and - _ = / : "
    "with '.' only between them (no leading, trailing or doubled '.')"
)
_KEY = re.compile(r"[A-Za-z0-9_=/:-]+(?:\.[A-Za-z0-9_=/:-]+)*")
_PREFIX = re.compile(r"[A-Za-z0-9_=/:.-]*")
#: How long update() keeps retrying when other writers keep changing the key.
UPDATE_DEADLINE = 30.0


def validate_key(key: object) -> str:
    """``key`` if it is a valid storage key, else :class:`StorageError` stating the rule."""
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise StorageError(
            f"invalid storage key {key!r}: a key is {KEY_RULE}", service=SERVICE, key=repr(key)
        )
    return key


def validate_prefix(prefix: object) -> str:
    """A ``keys()`` prefix: the start of a key (so it may end with '.'), or empty for all keys."""
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH or not _PREFIX.fullmatch(prefix):
        raise StorageError(
            f"invalid key prefix {prefix!r}: a prefix is the start of a key, and a key is {KEY_RULE}",
            service=SERVICE,
            key=repr(prefix),
        )
    return prefix


def encode_value(key: str, value: object) -> str:
    """``value`` as compact JSON text, or :class:`StorageError` saying why it cannot be stored."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StorageError(
            f"the value for key {key!r} is not JSON-serializable ({exc}): store dicts, lists, "
            "strings, finite numbers, booleans and None",
            service=SERVICE,
            key=key,
        ) from None


def ttl_seconds(ttl: float | None) -> int | None:
    """A TTL as the store keeps it: whole seconds, rounded up, at least 1; None for no expiry."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
        raise StorageError(f"ttl must be a positive number of seconds, got {ttl!r}", service=SERVICE)
    return max(1, math.ceil(ttl))


class StorageClient:
    """The storage of plugin ``plugin``, reached through ``bus()`` (its connected EventBus)."""

    def __init__(self, bus: Callable[[], EventBus], plugin: str, *, timeout: float = 10.0) -> None:
        self._bus = bus
        self.plugin = plugin
        self.timeout = timeout

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when there is none (or it expired)."""
        found, value, _ = await self._get(validate_key(key))
        return value if found else default

    async def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` (JSON-serializable) under ``key``; with ``ttl`` it expires after that
        many seconds (rounded up to whole seconds). Raises :class:`StorageQuotaExceeded` if it
        would pass a quota; then nothing changed."""
        key = validate_key(key)
        await self._put(key, encode_value(key, value), ttl_seconds(ttl), None)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed."""
        data = await self._call("delete", {"key": validate_key(key)})
        return bool(data.get("deleted"))

    async def keys(self, prefix: str = "") -> list[str]:
        """This plugin's keys that start with ``prefix`` (all of them by default), sorted."""
        data = await self._call("keys", {"prefix": validate_prefix(prefix)})
        return [str(k) for k in data.get("keys", [])]

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any] | Callable[[Any], Awaitable[Any]],
        default: Any = None,
        *,
        ttl: float | None = None,
    ) -> Any:
        """Atomically replace the value of ``key`` with ``fn(current)`` and return the new value.

        ``current`` is ``default`` when the key does not exist. If another writer changed the key
        between the read and the write (compare-and-set on its revision), ``fn`` runs again on
        the newer value, so ``fn`` must be free of side effects. Gives up with
        :class:`StorageError` after 30 s of lost races.
        """
        key = validate_key(key)
        seconds = ttl_seconds(ttl)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UPDATE_DEADLINE
        attempt = 0
        while True:
            found, current, revision = await self._get(key)
            new = fn(current if found else default)
            if inspect.isawaitable(new):
                new = await new
            try:
                await self._put(key, encode_value(key, new), seconds, revision if found else 0)
                return new
            except StorageError as exc:
                if not exc.details.get("conflict"):
                    raise
            attempt += 1
            if loop.time() >= deadline:
                raise StorageError(
                    f"update of {key!r} gave up after {attempt} attempts: other writers kept changing it",
                    service=SERVICE,
                    key=key,
                )
            # Spread the retries of many racing writers, so most of them win on the next go.
            await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** min(attempt, 10))))

    # ------------------------------------------------------------------ internals

    async def _get(self, key: str) -> tuple[bool, Any, int]:
        data = await self._call("get", {"key": key})
        if not data.get("found"):
            return False, None, 0
        return True, json.loads(str(data["value"])), int(data.get("revision") or 0)

    async def _put(self, key: str, text: str, ttl: int | None, revision: int | None) -> None:
        request: dict[str, Any] = {"key": key, "value": text}
        if ttl is not None:
            request["ttl"] = ttl
        if revision is not None:
            request["revision"] = revision
        await self._call("put", request)

    async def _call(self, op: str, data: dict[str, Any]) -> dict[str, Any]:
        bus = self._bus()
        subject = Subjects.service(SERVICE, self.plugin, op)
        try:
            reply = await bus.request(subject, data, f"plugin-{self.plugin}", timeout=self.timeout)
        except PayloadTooLarge as exc:
            raise StorageQuotaExceeded(
                f"the {op} request is too large for one NATS message ({exc.sizes()}): "
                "store smaller values ([nats] max_payload limits every message)",
                service=SERVICE,
                limit="nats.max_payload",
                size=exc.size,
                maximum=exc.limit,
            ) from exc
        except NoResponders as exc:
            raise StorageError(
                "the storage service is not running (storage needs the plugin to run under `rosey run`)",
                service=SERVICE,
            ) from exc
        except RequestTimeout as exc:
            raise StorageError(
                f"the storage service did not answer within {self.timeout:g} s", service=SERVICE
            ) from exc
        if not reply.data.get("ok"):
            raise ServiceError.from_wire(dict(reply.data))
        return dict(reply.data)
