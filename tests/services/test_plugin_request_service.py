"""The pattern of the plugin services: requests in a plugin's own name, typed errors back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from bot.rosey.core.event_bus import EventBus
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
