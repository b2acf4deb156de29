"""The floor of an IRC command round trip: a minimal echo bot written directly on pydle.

``python bench/irc_echo_bot.py HOST PORT NICK CHANNEL``: joins CHANNEL and answers every
``!echo TEXT`` said there with ``TEXT``; prints READY once it is in the channel. Same library and
event loop as Rosey's IRC adapter, none of Rosey (no NATS, no router, no plugin process).
"""

from __future__ import annotations

import asyncio
import sys

import pydle


class EchoBot(pydle.Client):  # type: ignore[misc]
    RECONNECT_ON_ERROR = False

    def __init__(self, nick: str, channel: str) -> None:
        super().__init__(nick, fallback_nicknames=[])
        self.room = channel

    async def whois(self, nickname: str) -> None:  # no WHOIS per nick seen (as in the adapter)
        return None

    async def on_connect(self) -> None:
        await super().on_connect()
        await self.join(self.room)

    async def on_join(self, channel: str, user: str) -> None:
        if user == self.nickname:
            print("READY", flush=True)

    async def on_channel_message(self, target: str, by: str, message: str) -> None:
        if by != self.nickname and message.startswith("!echo "):
            await self.rawmsg("PRIVMSG", target, message[6:])


async def main(host: str, port: int, nick: str, channel: str) -> None:
    bot = EchoBot(nick, channel)
    await bot.connect(host, port, tls=False)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
