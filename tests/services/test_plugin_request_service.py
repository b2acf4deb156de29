"""The pattern of the plugin services: requests in a plugin's own name, typed errors back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import InvalidSubject, ServiceError, StorageQuotaExceeded
from bot.rosey.services.base import PluginRequestService


async def test_the_subject_names_the_plugin_and_errors_keep_their_type(nats_url: str) -> None:
    async def put(plugin: str, data: Mapping[str, Any]) -> dict[str, Any]:
        if data.get("big"):
            raise StorageQuotaExceeded("over max_bytes", service="storage", limit="max_bytes")
        return {"who": plugin, "key": data["key"]}

    async with EventBus(nats_url, name="svc") as bus:
        service = PluginRequestService(bus, "storage", {"put": put}, source="test")
        await service.start()
        try:
            reply = await bus.request(
                Subjects.service("storage", "trivia", "put"), {"key": "k"}, "t", timeout=5
            )
            assert reply.data == {"ok": True, "who": "trivia", "key": "k"}
            reply = await bus.request(
                Subjects.service("storage", "trivia", "put"), {"big": True}, "t", timeout=5
            )
            assert reply.data["ok"] is False
            error = ServiceError.from_wire(reply.data)
            assert type(error) is StorageQuotaExceeded and error.limit == "max_bytes"  # type: ignore[attr-defined]
            assert str(error) == "over max_bytes" and error.service == "storage"
            reply = await bus.request(Subjects.service("storage", "trivia", "drop"), {}, "t", timeout=5)
            assert reply.data["ok"] is False and "no operation 'drop' (known: put)" in reply.data["error"]
            reply = await bus.request(Subjects.service("storage", "trivia", "put"), {}, "t", timeout=5)
            assert reply.data == {"ok": False, "error": "bad request: 'key'"}
        finally:
            await service.stop()


def test_service_subjects_refuse_wildcards_and_foreign_names() -> None:
    with pytest.raises(InvalidSubject):
        Subjects.service("storage", "*", "get")
    with pytest.raises(InvalidSubject):
        Subjects.service("storage", "trivia", ">")
    assert Subjects.service_plugin("rosey.services.http.weather.request") == ("weather", "request")
    assert Subjects.service_plugin("rosey.services.http.weather") is None


def test_an_unknown_error_type_from_the_wire_is_a_service_error() -> None:
    error = ServiceError.from_wire(
        {"ok": False, "error": "boom", "error_type": "SystemExit", "retry_after": 2}
    )
    assert type(error) is ServiceError and error.retry_after == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "reply, allowed",
    [
        ("_INBOX.plugin_trivia.abc.1", True),  # its own inbox
        ("_INBOX.plugin_quotes.abc.1", False),  # another plugin's
        ("_INBOX.adapter_irc.abc", False),  # an adapter's
        ("_INBOX.rosey_core.abc.7", False),  # the core's: a forged answer to the router's request
        ("rosey.chat.irc.send", False),  # not an inbox at all: the service would say it in chat
        ("rosey.commands.quotes.execute", False),
        ("_INBOX.x", False),
        ("_INBOX.Zk3Lq9.abc", True),  # a random inbox: a server without identities
    ],
)
def test_a_service_answers_only_into_the_askers_own_inbox(reply: str, allowed: bool) -> None:
    from bot.rosey.services.base import own_inbox

    assert own_inbox("trivia", reply) is allowed


async def test_a_request_with_a_foreign_reply_subject_gets_no_answer_there(nats_url: str) -> None:
    async def get(plugin: str, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"value": "attacker-chosen text"}

    async with EventBus(nats_url, name="svc") as bus:
        service = PluginRequestService(bus, "storage", {"get": get}, source="test")
        await service.start()
        said: list[Any] = []
        await bus.subscribe("rosey.chat.irc.send", lambda event: _append(said, event))
        try:
            forged = Event(subject=Subjects.service("storage", "trivia", "get"), data={}, source="hostile")
            await bus.publish_event(forged, reply="rosey.chat.irc.send")
            # A request with an honest inbox, after it, is answered: the first was seen and dropped.
            reply = await bus.request(Subjects.service("storage", "trivia", "get"), {}, "t", timeout=5)
            assert reply.data["ok"] is True
            await bus.flush()
            assert said == []
        finally:
            await service.stop()


async def _append(found: list[Any], event: Any) -> None:
    found.append(event)
