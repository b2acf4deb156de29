"""A plugin denied 100,000 times a second must not write 100,000 lines a second into Rosey's log."""

from __future__ import annotations

import asyncio
import logging

import nats
import pytest

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig, NatsUser

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(20)]

DENY_ALL = {"publish": {"allow": ["ok"]}, "subscribe": {"allow": ["_INBOX.>"]}}


class Records(logging.Handler):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._loop = loop
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())  # from the server's log thread
        self._loop.call_soon_threadsafe(self.changed.set)


async def deny(server: NatsServer, user: str, count: int) -> None:
    async def quiet(_: Exception) -> None:
        pass

    nc = await nats.connect(server.url, user=user, password="pw", error_cb=quiet, allow_reconnect=False)
    for _ in range(count):
        await nc.publish("forbidden", b"x")
    await nc.flush()
    await nc.flush()
    await nc.close()


async def test_denials_are_all_counted_but_not_all_logged() -> None:
    users = tuple(
        NatsUser(user=name, password="pw", permissions=DENY_ALL) for name in ("plugin_a", "plugin_b")
    )
    records = Records(asyncio.get_running_loop())
    log = logging.getLogger("bot.rosey.broker.nats_server")
    log.addHandler(records)
    try:
        with NatsServer(NatsServerConfig(users=users, jetstream=False)) as server:
            await deny(server, "plugin_a", 2000)
            # The log is read in order: once plugin_b's one denial is logged, plugin_a's are read.
            await deny(server, "plugin_b", 1)
            while not any("plugin_b" in line for line in records.lines):
                records.changed.clear()
                await asyncio.wait_for(records.changed.wait(), 10)
            assert server.violations == {"plugin_a": 2000, "plugin_b": 1}
    finally:
        log.removeHandler(records)
    about_a = [line for line in records.lines if "plugin_a" in line]
    assert 10 <= len(about_a) <= 30, len(about_a)  # 10 a second, and one line summing up the rest
