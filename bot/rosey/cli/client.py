"""The CLI's line to a running ``rosey run``: its runtime file, its bus, its control service."""

from __future__ import annotations

import os
from typing import Any

from bot.rosey.broker.identities import CORE_INBOX_PREFIX
from bot.rosey.config import RoseyConfig
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import CliError, NoResponders, RequestTimeout
from bot.rosey.runtime import RuntimeInfo, read_runtime

__all__ = ["ask", "connect", "control"]

SOURCE = "rosey-cli"


async def connect(info: RuntimeInfo, *, inbox_prefix: str = CORE_INBOX_PREFIX) -> EventBus:
    """A bus connection to the instance ``info`` describes, as the core identity it wrote down."""
    # Against an operator's server the credentials are in the URL, or a token in NATS_TOKEN.
    token = None if info.user else os.getenv("NATS_TOKEN") or None
    bus = EventBus(
        info.nats_url,
        token,
        SOURCE,
        user=info.user,
        password=info.password,
        connect_timeout=3.0,
        inbox_prefix=inbox_prefix,  # s-host: a remote plugin answers only into its host's inbox
    )
    await bus.connect()
    return bus


async def control(
    config: RoseyConfig, action: str, data: dict[str, Any], timeout: float = 30.0
) -> dict[str, Any]:
    """One request to the running instance's control service; raises CliError on failure."""
    info = read_runtime(config.state_dir)
    bus = await connect(info)
    try:
        return await ask(bus, info, action, data, timeout=timeout)
    finally:
        await bus.disconnect()


async def ask(
    bus: EventBus, info: RuntimeInfo, action: str, data: dict[str, Any], *, timeout: float = 30.0
) -> dict[str, Any]:
    """One request to the control service on a connection already made (for commands that ask
    again and again, as ``rosey top`` does); raises CliError on failure."""
    try:
        reply = await bus.request(Subjects.supervisor(action), data, SOURCE, timeout=timeout)
    except (NoResponders, RequestTimeout) as exc:
        raise CliError(f"Rosey (pid {info.pid}) did not answer: {exc}") from exc
    if not reply.data.get("ok"):
        raise CliError(str(reply.data.get("error", "unknown error")))
    return reply.data
