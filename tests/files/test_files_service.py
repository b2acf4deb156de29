"""The files service on its own (a plain nats-server, no identities): uploads, limits, who may
fetch what, release; and the wire types (FileRef, OutgoingMessage.file) and the config table."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.core.chat import FileRef, OutgoingMessage
from bot.rosey.core.event_bus import EventBus
from bot.rosey.errors import ConfigError, FileTooLarge, MalformedEvent, ServiceError
from bot.rosey.files_config import FileLimits, parse_file_limits
from bot.rosey.plugins.files_client import FilesClient, _call, fetch_file, release_file
from bot.rosey.services.files import FilesService, safe_name


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """max_payload 4 KiB: a file of a few KiB travels in several pieces."""
    server = NatsServer(NatsServerConfig(work_dir=tmp_path_factory.mktemp("nats-files"), max_payload=4096))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Setup:
    service: FilesService
    bus: EventBus
    root: Path

    def client(self, plugin: str = "cal") -> FilesClient:
        return FilesClient(lambda: self.bus, plugin, timeout=5)


@pytest.fixture
async def files(small_server: NatsServer, tmp_path: Path) -> AsyncIterator[Setup]:
    core = EventBus(small_server.url, name="rosey-files")
    await core.connect()
    bus = EventBus(small_server.url, name="asker")
    await bus.connect()
    limits = {"cal": FileLimits(max_bytes=10_000, max_pending=3)}
    service = FilesService(core, tmp_path / "files", limits, {"matrix", "discord"})
    await service.start()
    try:
        yield Setup(service, bus, tmp_path / "files")
    finally:
        await service.stop()
        await bus.disconnect()
        await core.disconnect()


async def test_a_file_travels_in_pieces_to_the_one_adapter_it_was_claimed_for(files: Setup) -> None:
    data = bytes(range(256)) * 30  # 7,680 bytes: several pieces at 4 KiB a message
    ref = await files.client().upload("notes.ics", data)
    assert (ref.name, ref.mime, ref.size) == ("notes.ics", "text/calendar", len(data))
    assert files.service.chunk_bytes() < len(data) // 2
    with pytest.raises(ServiceError, match="no file"):  # not claimed yet: nobody may read it
        await fetch_file(files.bus, "matrix", ref)
    assert files.service.claim("other", ref.to_wire(), "matrix") is None  # another plugin's answer
    claimed = files.service.claim("cal", {"id": ref.id, "name": "lie.exe", "size": 1}, "matrix")
    assert claimed == ref  # the service's own description, not the answer's
    assert files.service.claim("cal", ref.to_wire(), "matrix") is None  # once
    with pytest.raises(ServiceError, match="no file"):
        await fetch_file(files.bus, "discord", ref)  # another adapter
    assert await fetch_file(files.bus, "matrix", ref) == data
    assert await fetch_file(files.bus, "matrix", ref) == data  # a retry, until released or expired
    await release_file(files.bus, "matrix", ref)
    assert not (files.root / ref.id).exists()
    with pytest.raises(ServiceError, match="no file"):
        await fetch_file(files.bus, "matrix", ref)


async def test_operations_are_for_plugins_or_adapters_only(files: Setup) -> None:
    ref = await files.client().upload("a.txt", b"hello")
    files.service.claim("cal", ref.to_wire(), "matrix")
    with pytest.raises(ServiceError, match="'fetch' is for adapters only"):
        await _call(files.bus, "cal", "fetch", {"id": ref.id}, 5)
    with pytest.raises(ServiceError, match="'begin' is for plugins only"):
        await _call(files.bus, "matrix", "begin", {"name": "x", "size": 1}, 5)
    with pytest.raises(ServiceError, match="no file"):
        await _call(files.bus, "matrix", "fetch", {"id": "../" + ref.id}, 5)


async def test_limits_are_checked_before_and_while_uploading(files: Setup) -> None:
    with pytest.raises(FileTooLarge) as caught:
        await files.client().upload("big.bin", b"x" * 10_001)
    assert (caught.value.size, caught.value.limit) == (10_001, 10_000)  # type: ignore[attr-defined]
    assert not any(files.root.iterdir())
    # A plugin that announces 10 bytes and sends more: refused, and the upload is gone.
    begun = await _call(files.bus, "cal", "begin", {"name": "x.bin", "size": 10}, 5)
    piece = base64.b64encode(b"y" * 11).decode()
    with pytest.raises(FileTooLarge):
        await _call(files.bus, "cal", "put", {"upload": begun["upload"], "offset": 0, "data": piece}, 5)
    assert not (files.root / begun["upload"]).exists()
    begun = await _call(files.bus, "cal", "begin", {"name": "x.bin", "size": 10}, 5)
    with pytest.raises(ServiceError, match="0 of 10 bytes"):
        await _call(files.bus, "cal", "commit", {"upload": begun["upload"]}, 5)
    for name in ("a", "b"):
        await files.client().upload(name, b"1")
    with pytest.raises(ServiceError, match="max_pending") as waiting:
        await files.client().upload("c", b"1")
    assert waiting.value.details["limit"] == "max_pending"
    with pytest.raises(ServiceError, match="media type"):
        await files.client("other").upload("a", b"1", "not a type")
    with pytest.raises(ServiceError, match="bytes, not str"):
        await files.client("other").upload("a", "text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("calendar.ics", "calendar.ics"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("/abs/path", "_abs_path"),
        ("..", "file"),
        ("", "file"),
        (".hidden", "hidden"),
        ("a\x00b\nc.txt", "ab c.txt"),
        ("Réunion café.ics", "Réunion café.ics"),
        ("x" * 300 + ".ics", "x" * 124 + ".ics"),
    ],
)
def test_safe_name(name: str, safe: str) -> None:
    assert safe_name(name) == safe


def test_an_outgoing_message_carries_a_checked_file_reference() -> None:
    ref = FileRef(id="ab" * 16, name="a.ics", mime="text/calendar", size=3)
    message = OutgoingMessage(text="here", channel="#c", file=ref)
    assert OutgoingMessage.from_wire(message.to_wire()) == message
    assert OutgoingMessage.from_wire({"text": "x", "channel": "#c"}).file is None
    for bad in (
        {"id": "../x", "name": "a", "size": 1},
        {"id": "ab" * 16, "name": "../a", "size": 1},
        {"id": "ab" * 16, "name": "a", "size": -1},
        {"id": "ab" * 16, "name": "a", "size": 1, "mime": "text/html; x"},
        "a string",
    ):
        with pytest.raises(MalformedEvent):
            OutgoingMessage.from_wire({"text": "x", "channel": "#c", "file": bad})
    assert ref.describe() == "a.ics (3 bytes)"
    assert FileRef(id="ab" * 16, name="b", size=1_234_567).describe() == "b (1.2 MB)"


def test_the_files_table() -> None:
    assert parse_file_limits("p", {}) == FileLimits()
    assert parse_file_limits("p", {"max_bytes": 5, "expire_seconds": 2}).to_dict() == {
        "max_bytes": 5,
        "max_pending": 16,
        "expire_seconds": 2,
    }
    with pytest.raises(ConfigError, match=r"plugins\.p\.files\.max_bytes"):
        parse_file_limits("p", {"max_bytes": 200 * 1024 * 1024})
