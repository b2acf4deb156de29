"""Platform adapters: they turn a chat platform's messages into ``rosey.events.message`` events
and say what arrives on ``rosey.chat.<platform>.send`` (the protocol is in ``base``). Only the
console adapter exists so far.

Adapters for real platforms will bring their own dependencies: import them from their modules;
only the dependency-free console adapter is re-exported here.
"""

from bot.rosey.adapters.base import Adapter
from bot.rosey.adapters.console import ConsoleAdapter

__all__ = ["Adapter", "ConsoleAdapter"]
