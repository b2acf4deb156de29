"""The storage service and the SDK client on a real JetStream server: the API, quotas, TTL, CAS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.rosey.broker.nats_server import NatsServer
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import StorageError, StorageQuotaExceeded
from bot.rosey.plugins.storage_client import StorageClient, validate_key
from bot.rosey.services.storage import ADMIN_SUBJECT, StorageService, stream_name
from bot.rosey.storage_config import StorageLimits
from tests.storage.conftest import Store

MakeStore = Callable[[dict[str, StorageLimits]], Awaitable[Store]]


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Re-check ``check`` until it holds: for what the server does on its own clock (a TTL expiry
    sends no message anywhere, so there is no event to wait on)."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_get_put_delete_keys(make_store: MakeStore) -> None:
    store = await make_store({"api": StorageLimits()})
    s = await store.client("api")
    assert await s.get("missing") is None
    assert await s.get("missing", default={"n": 0}) == {"n": 0}
    value = {"text": "héllo ✓", "n": [1, 2.5, None, True], "nested": {"a": {}}}
    await s.put("quote.1", value)
    await s.put("quote.2", "two")
    await s.put("score:ann", 3)
    assert await s.get("quote.1") == value
    assert await s.keys() == ["quote.1", "quote.2", "score:ann"]
    assert await s.keys("quote.") == ["quote.1", "quote.2"]
    await s.put("quote.2", "deux")  # replace
    assert await s.get("quote.2") == "deux"
    assert await s.delete("quote.2") is True
    assert await s.delete("quote.2") is False
    assert await s.get("quote.2", "gone") == "gone"
    assert await s.keys("quote") == ["quote.1"]


async def test_keys_and_values_are_validated_with_the_rule(make_store: MakeStore) -> None:
    store = await make_store({"val": StorageLimits()})
    s = await store.client("val")
    for bad in ["", "a b", "a..b", ".a", "a.", "a*", "a>", "x" * 257, "é"]:
        with pytest.raises(StorageError, match="a key is 1 to 256 characters"):
            await s.put(bad, 1)
    with pytest.raises(StorageError, match="not JSON-serializable"):
        await s.put("k", {1, 2})
    with pytest.raises(StorageError, match="not JSON-serializable"):
        await s.put("k", float("nan"))
    with pytest.raises(StorageError, match="ttl must be a positive number"):
        await s.put("k", 1, ttl=0)
    assert validate_key("a-b_c=d/e:f.g") == "a-b_c=d/e:f.g"
    # The service checks again whatever a raw request sends: it never trusts the SDK.
    reply = await store.core.request(
        Subjects.service("storage", "val", "put"), {"key": "a b", "value": "1"}, timeout=5
    )
    assert reply.data["ok"] is False and "invalid storage key" in reply.data["error"]
    reply = await store.core.request(
        Subjects.service("storage", "val", "put"), {"key": "k", "value": "{nope"}, timeout=5
    )
    assert reply.data["ok"] is False and "not valid JSON" in reply.data["error"]
    assert await s.keys() == []


async def test_max_value_bytes_refused_before_writing(make_store: MakeStore) -> None:
    store = await make_store({"val2": StorageLimits(max_value_bytes=100)})
    s = await store.client("val2")
    await s.put("k", "a" * 98)  # 100 bytes of JSON with the quotes
    with pytest.raises(StorageQuotaExceeded, match="max_value_bytes") as info:
        await s.put("k", "b" * 99)
    assert info.value.limit == "max_value_bytes"  # type: ignore[attr-defined]
    assert info.value.size == 101 and info.value.maximum == 100  # type: ignore[attr-defined]
    assert await s.get("k") == "a" * 98


async def test_max_keys_counts_keys_not_writes(make_store: MakeStore) -> None:
    store = await make_store({"keys3": StorageLimits(max_keys=3)})
    s = await store.client("keys3")
    for key in ("a", "b", "c"):
        await s.put(key, key)
    with pytest.raises(StorageQuotaExceeded, match="max_keys") as info:
        await s.put("d", "d")
    assert info.value.limit == "max_keys"  # type: ignore[attr-defined]
    await s.put("a", "replaced")  # replacing an existing key is not a new key
    assert await s.delete("b")
    await s.put("d", "d")  # a deleted key leaves room
    assert {k: await s.get(k) for k in await s.keys()} == {"a": "replaced", "c": "c", "d": "d"}


async def test_max_bytes_refused_by_the_server_and_nothing_is_lost(make_store: MakeStore) -> None:
    store = await make_store({"bytes": StorageLimits(max_bytes=4096, max_value_bytes=1000)})
    s = await store.client("bytes")
    written = []
    with pytest.raises(StorageQuotaExceeded, match="max_bytes") as info:
        for i in range(100):
            await s.put(f"k{i}", "x" * 900)
            written.append(f"k{i}")
    assert info.value.limit == "max_bytes"  # type: ignore[attr-defined]
    assert 2 <= len(written) < 5
    assert await s.keys() == sorted(written)
    for key in written:
        assert await s.get(key) == "x" * 900
    listing = await store.core.request(ADMIN_SUBJECT, {"plugin": "bytes", "op": "list"}, timeout=5)
    assert listing.data["usage"]["keys"] == len(written)  # the list re-reads the usage
    usage = store.service.usage()["bytes"]
    assert usage["keys"] == len(written) and usage["max_bytes"] == 4096 and usage["bytes"] <= 4096


async def test_ttl_is_the_servers(make_store: MakeStore) -> None:
    store = await make_store({"ttl": StorageLimits()})
    s = await store.client("ttl")
    await s.put("short", "soon gone", ttl=0.2)  # rounded up to 1 s
    await s.put("long", "stays", ttl=3600)
    await s.put("plain", "stays")
    assert await s.get("short") == "soon gone"

    async def expired() -> bool:
        return await s.get("short") is None

    await _until(expired)
    assert await s.keys() == ["long", "plain"]


async def test_update_is_atomic_under_100_concurrent_writers(make_store: MakeStore) -> None:
    store = await make_store({"cas": StorageLimits()})
    clients = [await store.client("cas") for _ in range(4)]  # several connections, as restarts would
    results = await asyncio.gather(
        *(clients[i % 4].update("counter", lambda n: (n or 0) + 1) for i in range(100))
    )
    assert sorted(results) == list(range(1, 101))
    assert await clients[0].get("counter") == 100

    async def double(value: Any) -> Any:
        return value * 2

    assert await clients[0].update("counter", double) == 200
    assert await clients[0].update("fresh", lambda v: [*v, "x"], default=[]) == ["x"]


async def test_a_stale_revision_is_a_conflict(make_store: MakeStore) -> None:
    store = await make_store({"cas2": StorageLimits()})
    subject = Subjects.service("storage", "cas2", "put")
    ok = await store.core.request(subject, {"key": "k", "value": "1", "revision": 0}, timeout=5)
    assert ok.data["ok"] is True
    again = await store.core.request(subject, {"key": "k", "value": "2", "revision": 0}, timeout=5)
    assert again.data["ok"] is False and again.data["conflict"] is True
    got = await store.core.request(Subjects.service("storage", "cas2", "get"), {"key": "k"}, timeout=5)
    assert got.data["value"] == "1" and got.data["revision"] == ok.data["revision"]


async def test_limits_follow_the_config_but_never_delete_data(
    make_store: MakeStore, js_server: NatsServer
) -> None:
    store = await make_store({"grow": StorageLimits(max_keys=5)})
    s = await store.client("grow")
    for i in range(5):
        await s.put(f"k{i}", i)
    await store.service.stop()
    # Restarted with a lower max_keys: the server would drop keys to obey it, so the old limit stays.
    lower = await _service(store.core, {"grow": StorageLimits(max_keys=2)}, js_server)
    assert await s.keys() == [f"k{i}" for i in range(5)]
    with pytest.raises(StorageQuotaExceeded):
        await s.put("k9", 9)
    await lower.stop()
    higher = await _service(store.core, {"grow": StorageLimits(max_keys=6)}, js_server)
    await s.put("k9", 9)
    assert len(await s.keys()) == 6
    await higher.stop()


async def _service(bus: EventBus, limits: dict[str, StorageLimits], server: NatsServer) -> StorageService:
    service = StorageService(bus, limits, server=server.url)
    await service.start()
    return service


async def test_operator_requests(make_store: MakeStore) -> None:
    store = await make_store({"ops": StorageLimits(max_keys=50)})
    s = await store.client("ops")
    for i in range(20):
        await s.put(f"k{i:02}", {"i": i, "pad": "p" * 20_000})  # pages of 256 KiB: several pages

    async def admin(**data: Any) -> dict[str, Any]:
        reply = await store.core.request(ADMIN_SUBJECT, data, timeout=10)
        return dict(reply.data)

    listing = await admin(plugin="ops", op="list")
    assert listing["keys"] == [f"k{i:02}" for i in range(20)]
    assert listing["usage"]["keys"] == 20 and listing["usage"]["max_keys"] == 50
    assert (await admin(plugin="ops", op="get", key="k03"))["value"]["i"] == 3
    items: dict[str, Any] = {}
    after: str | None = ""
    pages = 0
    while after is not None:
        page = await admin(plugin="ops", op="export", after=after)
        items.update(page["items"])
        after = page["next"]
        pages += 1
    assert pages > 1 and sorted(items) == listing["keys"]
    assert (await admin(plugin="ops", op="delete", key="k03"))["deleted"] is True
    imported = await admin(plugin="ops", op="import", items={"k03": {"i": 3}, "new": [1]})
    assert imported["written"] == 2 and await s.get("new") == [1]
    over = await admin(plugin="ops", op="import", items={f"x{i}": i for i in range(40)})
    assert over["ok"] is False and over["error_type"] == "StorageQuotaExceeded"
    unknown = await admin(plugin="nobody", op="list")
    assert unknown["ok"] is False and "no plugin named 'nobody'" in unknown["error"]


async def test_reply_subjects_outside_the_own_inbox_get_nothing(make_store: MakeStore) -> None:
    """The reply subject is the asker's choice: the service (core identity) answers inboxes only,
    never another identity's, so a plugin cannot make it publish a stored value elsewhere."""
    store = await make_store({"hijack": StorageLimits()})
    s = await store.client("hijack")
    await s.put("k", {"text": "forged"})
    seen: list[str] = []

    async def record(event: Any) -> None:
        seen.append(event.subject)

    for subject in ("rosey.chat.console.send", "_INBOX.plugin_other.x", "_INBOX.adapter_irc.x"):
        await store.core.subscribe(subject, record)
    await store.core.flush()
    request = json.dumps({"id": "1", "timestamp": 0, "subject": "x", "source": "x", "data": {"key": "k"}})
    for reply in ("rosey.chat.console.send", "_INBOX.plugin_other.x", "_INBOX.adapter_irc.x"):
        await store.core.client.publish(
            Subjects.service("storage", "hijack", "get"), request.encode(), reply=reply
        )
    await store.core.flush()
    assert await s.get("k") == {"text": "forged"}  # served after the dropped ones, in order
    await store.core.flush()
    assert seen == []


async def test_without_jetstream_storage_says_so_in_one_line(nats_url: str) -> None:
    async with EventBus(nats_url, name="rosey-storage") as bus, EventBus(nats_url, name="plugin") as plugin:
        service = StorageService(bus, {"nojs": StorageLimits()}, server=nats_url)
        await service.start()
        try:
            client = StorageClient(lambda: plugin, "nojs")
            with pytest.raises(StorageError, match="has no JetStream") as info:
                await client.get("k")
            assert "\n" not in str(info.value) and "jetstream {}" in str(info.value)
        finally:
            await service.stop()


async def test_a_bucket_the_server_refuses_costs_only_its_plugin(make_store: MakeStore) -> None:
    """A server without room for one plugin's max_bytes (here: an exabyte) refuses its bucket: that
    plugin gets a clear error, the others their storage, and Rosey starts."""
    store = await make_store({"huge": StorageLimits(max_bytes=10**18), "fine": StorageLimits()})
    with pytest.raises(StorageError, match="storage for plugin 'huge' is unavailable: its bucket could not"):
        await (await store.client("huge")).put("k", 1)
    fine = await store.client("fine")
    await fine.put("k", 1)
    assert await fine.get("k") == 1


def test_stream_names() -> None:
    assert stream_name("trivia") == "KV_rosey_trivia"
