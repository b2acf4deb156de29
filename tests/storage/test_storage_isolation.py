"""A hostile plugin against another plugin's storage, through the real RoseyApp, under both launchers.

Every check reads what the store really holds (the core's own JetStream view) or what really
arrived somewhere, never the attacking plugin's claim.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from tests.security.conftest import Rosey, StartRosey
from tests.storage.conftest import STORAGE_PLUGIN

PLUGINS = {"store": {"path": str(STORAGE_PLUGIN)}, "thief": {"path": str(STORAGE_PLUGIN)}}


async def _held(rosey: Rosey) -> dict[str, Any]:
    """What the victim's bucket really holds, read with the core's credentials."""
    js = rosey.core.client.jetstream()
    info = await js.stream_info("KV_rosey_store", subjects_filter="$KV.rosey_store.>")
    values = {}
    for subject in info.state.subjects or {}:
        msg = await js.get_msg("KV_rosey_store", subject=subject, direct=True)
        values[subject.removeprefix("$KV.rosey_store.")] = json.loads(msg.data or b"null")
    return {"values": values, "consumers": info.state.consumer_count, "messages": info.state.messages}


async def _ok(rosey: Rosey, plugin: str, *args: str) -> dict[str, Any]:
    outcome = await rosey.command(plugin, *args)
    assert outcome.ok, outcome
    return dict(outcome.data)


async def test_a_plugin_reaches_no_other_plugins_data(start_rosey: StartRosey, launcher: str) -> None:
    rosey = await start_rosey(PLUGINS, launcher=launcher)
    await _ok(rosey, "store", "put", "secret", '"s3cret"')
    before = await _held(rosey)
    assert before == {"values": {"secret": "s3cret"}, "consumers": 0, "messages": 1}

    # Its own storage is its own: the same key name is another bucket.
    assert (await _ok(rosey, "thief", "get", "secret"))["value"] == "<missing>"
    await _ok(rosey, "thief", "put", "secret", '"mine"')

    # Watching the victim's own inbox and a deliver subject it would choose, to see what arrives.
    for subject in ("_INBOX.plugin_thief.steal", "$KV.rosey_store.>", "_INBOX.plugin_store.>"):
        await _ok(rosey, "thief", "raw_subscribe", subject)
    get = Event(subject="x", data={"key": "secret"}, source="thief").to_bytes().decode()
    consumer = json.dumps(
        {
            "stream_name": "KV_rosey_store",
            "config": {
                "deliver_subject": "_INBOX.plugin_thief.steal",
                "deliver_policy": "all",
                "ack_policy": "none",
            },
        }
    )
    attempts = [
        # The service, in the victim's name: the subject names the plugin, NATS checks it.
        ("raw_request", Subjects.service("storage", "store", "get"), get),
        ("raw_request", Subjects.service("storage", "store", "delete"), get),
        # The operator's door.
        ("raw_request", "rosey.supervisor.storage", json.dumps({"plugin": "store", "op": "export"})),
        # JetStream itself: stream info, direct get, a push consumer delivering to itself.
        ("raw_request", "$JS.API.STREAM.INFO.KV_rosey_store", ""),
        (
            "raw_request",
            "$JS.API.DIRECT.GET.KV_rosey_store",
            json.dumps({"last_by_subj": "$KV.rosey_store.secret"}),
        ),
        ("raw_request", "$JS.API.DIRECT.GET.KV_rosey_store.$KV.rosey_store.secret", ""),
        ("raw_request", "$JS.API.CONSUMER.CREATE.KV_rosey_store", consumer),
        ("raw_request", "$JS.API.CONSUMER.CREATE.KV_rosey_store.steal.$KV.rosey_store.>", consumer),
        ("raw_request", "$JS.API.STREAM.PURGE.KV_rosey_store", ""),
        ("raw_request", "$JS.API.STREAM.DELETE.KV_rosey_store", ""),
        ("raw_request", "$JS.API.STREAM.LIST", ""),
        # Its own bucket's API is closed too: no consumer anywhere, no raw writes.
        ("raw_request", "$JS.API.STREAM.INFO.KV_rosey_thief", ""),
        # Writing the victim's stream subject directly.
        ("raw_publish", "$KV.rosey_store.secret", '"overwritten"'),
        ("raw_publish", "$KV.rosey_store.planted", '"planted"'),
    ]
    for action, subject, payload in attempts:
        report = await _ok(rosey, "thief", action, subject, payload)
        assert report["outcome"] == "denied", (subject, report)
        if action == "raw_request":
            assert str(report["reply"]).startswith("no reply"), (subject, report)

    # Nothing changed, nothing was created, nothing arrived.
    assert await _held(rosey) == before
    await _ok(rosey, "store", "put", "other", '"new"')  # a write the subscriptions would have seen
    received = (await _ok(rosey, "thief", "received"))["value"]
    assert all(not seen for seen in received.values()), received
    assert (await _ok(rosey, "store", "get", "secret"))["value"] == "s3cret"
    assert (await _ok(rosey, "thief", "get", "secret"))["value"] == "mine"
    assert (await _ok(rosey, "thief", "keys"))["value"] == ["secret"]
    assert rosey.app.server is not None and rosey.app.server.violations.get("plugin_thief", 0) >= len(
        attempts
    )


async def test_the_service_never_answers_outside_the_askers_inbox(
    start_rosey: StartRosey, launcher: str
) -> None:
    """The reply subject is the plugin's choice and NATS does not check it: the service must,
    or the thief could have the core publish on a chat platform, into another plugin's inbox,
    or send another plugin a command."""
    rosey = await start_rosey(PLUGINS, launcher=launcher)
    await _ok(rosey, "thief", "put", "k", json.dumps({"text": "forged", "channel": "#x"}))
    seen = await rosey.collect("rosey.chat.>", "_INBOX.plugin_store.>", "rosey.commands.store.execute")
    get = Event(subject="x", data={"key": "k"}, source="thief").to_bytes().decode()
    for reply in ("rosey.chat.console.send", "_INBOX.plugin_store.x", "rosey.commands.store.execute"):
        report = await _ok(
            rosey, "thief", "raw_publish", Subjects.service("storage", "thief", "get"), get, reply
        )
        assert report["outcome"] == "allowed"  # NATS lets it ask in its own name...
    assert (await _ok(rosey, "thief", "get", "k"))["value"]["text"] == "forged"  # served after those
    await rosey.core.flush()
    assert seen.seen == []  # ...but no answer went anywhere but its own inbox


async def test_a_counter_bumped_by_100_concurrent_commands_ends_at_100(start_rosey: StartRosey) -> None:
    rosey = await start_rosey({"store": {"path": str(STORAGE_PLUGIN)}})
    outcomes = await asyncio.gather(
        *(rosey.command("store", "incr", "counter", timeout=30) for _ in range(100))
    )
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
    assert sorted(o.data["value"] for o in outcomes) == list(range(1, 101))
    assert (await _ok(rosey, "store", "get", "counter"))["value"] == 100
    usage = rosey.app.status().to_dict()["storage"]["store"]
    assert usage["max_keys"] == 10_000 and usage["max_value_bytes"] == 65_536
