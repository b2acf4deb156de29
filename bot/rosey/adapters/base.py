"""What every chat-platform adapter is: a bridge between one platform and the bus.

An adapter turns what people say on its platform into normalized events (the vocabulary of
:mod:`bot.rosey.core.chat`) and says on its platform whatever arrives on
``rosey.chat.<platform>.send``. It knows nothing of plugins and never talks to one: the router
sits between them, so the same plugin answers on every platform.

Two kinds implement this protocol: the console (the operator's terminal, run inside
``rosey run``, publishing with the core's identity), and every real platform, which runs in its
own supervised, sandboxed process as a :class:`~bot.rosey.adapters.chat_adapter.ChatAdapter`
(``run()`` and ``stop()`` come from the plugin SDK underneath; ``platform_type`` names it).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Adapter"]


@runtime_checkable
class Adapter(Protocol):
    """One platform's bridge. ``run()`` relays until the platform's session ends or ``stop()``."""

    #: The platform name in events and in ``rosey.chat.<platform>.send`` ("console", "irc", ...).
    platform: str

    async def run(self) -> None: ...

    async def stop(self) -> None: ...
