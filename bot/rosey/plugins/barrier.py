"""issue 16 (s-inflight): a replica's answer to the router's barrier, after another replica died.

When a replica dies, its ledger (plugins/ledger.py) names the commands its plugin code took; a
command NATS had handed to it but it never read (in its socket, or in nats-py's queue) is in no
ledger. The router finds those with a barrier: a request to each replica's own subject
(:func:`barrier_subject`), sent on the connection that sent the commands. NATS keeps the order of
the messages from one connection to another, so a replica reads every command the router sent it
before the barrier before it reads the barrier. The replica answers once its command handler has
taken every message read before the barrier (the SDK records a command in the ledger before its
first ``await``), naming which of the router's candidates it holds (taken, or answered lately:
that answer may still be on its way). A candidate that no live replica holds was on the dead one.

The standard library and the wire only: plugin processes import this module.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypedDict

from bot.rosey.core.event_bus import Subscription
from bot.rosey.core.subjects import Subjects
from bot.rosey.plugins.ledger import LedgerWriter

__all__ = ["BARRIER_ACTION", "BarrierReply", "barrier_reply", "barrier_subject", "candidates_of"]

#: The last token of a replica's barrier subject; under ``ping.<N>``, which a plugin's identity may
#: already subscribe to (broker/identities.py), so no permission changes.
BARRIER_ACTION = "barrier"
#: How long a replica waits for its command handler to catch up before saying it could not.
CATCH_UP = 1.5
_POLL = 0.002
#: Candidates read from one request: the router sends at most the commands it has in flight.
MAX_ASKED = 20_000


class BarrierReply(TypedDict):
    """The replica's answer: which candidates it holds; ``complete`` False when its command handler
    did not catch up in time (the router then decides nothing from this replica's answer)."""

    held: list[str]
    complete: bool
    #: The plugin class says ``idempotent = True``: the hub may send a lost host's commands again.
    idempotent: bool


def barrier_subject(plugin: str, replica: int | str) -> str:
    """``rosey.control.<plugin>.ping.<N>.barrier``: replica ``N``'s barrier."""
    return f"{Subjects.control(plugin, 'ping')}.{replica}.{BARRIER_ACTION}"


def candidates_of(data: dict[str, Any]) -> list[str]:
    """The correlation ids a barrier request asks about (``{"ids": [...]}``), at most
    :data:`MAX_ASKED`; anything malformed is left out."""
    asked = data.get("ids")
    return [cid for cid in asked[:MAX_ASKED] if isinstance(cid, str)] if isinstance(asked, list) else []


async def barrier_reply(
    data: dict[str, Any], ledger: LedgerWriter, commands: Subscription | None, *, catch_up: float = CATCH_UP
) -> BarrierReply:
    """The answer to a barrier carrying ``data`` (``{"ids": [...]}``), once every command this
    process read before it has reached ``ledger``."""
    ids = candidates_of(data)
    complete = True
    if commands is not None:
        # Everything read before the barrier: the connection's reader queued it for the command
        # subscription before it queued the barrier for this one.
        target = commands.received()
        deadline = time.monotonic() + catch_up
        while commands.handed_over() < target:
            if time.monotonic() >= deadline:
                complete = False
                break
            # The command handler is held by back-pressure (every slot busy): a short poll, on
            # this rare path only, instead of a hook on every command.
            await asyncio.sleep(_POLL)
    return BarrierReply(held=ledger.holds(ids), complete=complete, idempotent=ledger.declared_idempotent)
