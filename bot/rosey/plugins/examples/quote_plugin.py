"""Quote: a quote book kept in plugin storage.

Usage::

    !quote add Premature optimization is the root of all evil -- Knuth
    !quote               a random quote (also: !quote random)
    !quote 12            quote number 12
    !quote search evil   quotes holding every word given (at most 5 shown)
    !quote delete 12     remove quote 12 (only who added it can)
    !quote count

What it shows plugin authors:

* one storage key per record (``quote.<n>``) plus a counter (``next_id``) bumped with the atomic
  ``self.storage.update()``: two people adding at the same moment get two different numbers;
* ``self.storage.keys(prefix)`` to list records, ``get``/``delete`` to read and remove them;
* quotas: the operator may cap a plugin's storage (``[plugins.quote.storage]``); a full store
  raises ``StorageQuotaExceeded``, which this plugin turns into a readable answer.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bot.rosey.core.events import Event
from bot.rosey.errors import StorageQuotaExceeded
from bot.rosey.plugins.permissions import Requests, Storage
from bot.rosey.plugins.plugin_interface import Command, PluginInterface, run_plugin

MAX_QUOTE_CHARS = 500
MAX_RESULTS = 5

USAGE = (
    "usage: !quote [random] | !quote <number> | !quote add <text> | !quote search <words> | "
    "!quote delete <number> | !quote count"
)


def user_name(event: Event) -> str:
    user = event.data.get("user")
    if isinstance(user, dict):
        return str(user.get("name") or user.get("username") or user.get("id") or "someone")
    return str(user or "someone")


def show(number: int | str, quote: dict[str, Any]) -> str:
    return f"💬 #{number}: {quote['text']}  (added by {quote['by']})"


class QuotePlugin(PluginInterface):
    """``!quote``: add, recall and search quotes."""

    plugin_name = "quote"
    # Checked by the SDK before handle_command runs ("!quote delete x" gets the usage line);
    # "!quote" alone and "!quote 12" match none of them and reach handle_command as they are.
    commands = (
        Command("random", help="A random quote (also plain !quote)"),
        Command("get", usage="<number:int>", help="Quote number N (also !quote N)"),
        Command("add", usage="<text...>", help="Keep a quote"),
        Command("search", usage="<words...>", help="Quotes holding these words"),
        Command("delete", usage="<number:int>", help="Delete a quote you added"),
        Command("count", help="How many quotes are kept"),
    )
    # One key per quote; the default storage quota holds thousands (`rosey plugins review quote`).
    requests = Requests(storage=Storage(max_bytes=4_000_000, max_keys=10_000))

    async def handle_command(self, event: Event) -> None:
        args = event.data.get("args") or []
        sub = args[0].lower() if args else "random"
        rest = " ".join(args[1:]).strip()
        try:
            if sub == "add":
                text = await self.add(event, rest)
            elif sub == "random":
                text = await self.random()
            elif sub.isdigit() or (sub == "get" and rest.isdigit()):
                text = await self.get(int(sub if sub.isdigit() else rest))
            elif sub == "search":
                text = await self.search(rest)
            elif sub == "delete":
                text = await self.delete(event, rest)
            elif sub == "count":
                text = f"📚 {len(await self.storage.keys('quote.'))} quote(s)"
            else:
                text = USAGE if sub in ("help", "-h", "--help") else f"unknown subcommand '{sub}'; {USAGE}"
        except UserError as exc:
            await self.publish_error(str(exc), event.correlation_id)
            return
        except StorageQuotaExceeded as exc:
            # "limit" names the quota that was hit: max_keys, max_bytes, max_value_bytes.
            await self.publish_error(
                f"the quote book is full ({exc.details.get('limit')}); delete some quotes first",
                event.correlation_id,
            )
            return
        await self.publish_result({"message": text}, event.correlation_id)

    async def add(self, event: Event, text: str) -> str:
        if not text:
            raise UserError("nothing to add; usage: !quote add <text>")
        if len(text) > MAX_QUOTE_CHARS:
            raise UserError(f"that quote is {len(text)} characters; at most {MAX_QUOTE_CHARS}")
        number = await self.storage.update("next_id", lambda n: (n or 0) + 1)
        await self.storage.put(f"quote.{number}", {"text": text, "by": user_name(event), "at": time.time()})
        return f"📝 Added quote #{number}"

    async def random(self) -> str:
        keys = await self.storage.keys("quote.")
        if not keys:
            return "📭 No quotes yet: add one with !quote add <text>"
        key = random.choice(keys)
        quote = await self.storage.get(key)
        if quote is None:  # deleted between the listing and now
            return await self.random()
        return show(key.removeprefix("quote."), quote)

    async def get(self, number: int) -> str:
        quote = await self.storage.get(f"quote.{number}")
        if quote is None:
            raise UserError(f"there is no quote #{number}")
        return show(number, quote)

    async def search(self, words: str) -> str:
        if not words:
            raise UserError("search for what? usage: !quote search <words>")
        wanted = words.casefold().split()
        found = []
        # One read per quote: fine for a few thousand quotes. A bigger book would keep an index
        # (e.g. one key per word) updated in add() and delete().
        for key in await self.storage.keys("quote."):
            quote = await self.storage.get(key)
            if quote and all(w in quote["text"].casefold() for w in wanted):
                found.append((int(key.removeprefix("quote.")), quote))
        if not found:
            return f"🔍 No quote matches '{words}'"
        found.sort(key=lambda item: item[0])
        lines = [show(n, q) for n, q in found[:MAX_RESULTS]]
        more = f" (and {len(found) - MAX_RESULTS} more)" if len(found) > MAX_RESULTS else ""
        return f"🔍 {len(found)} match(es){more}:\n" + "\n".join(lines)

    async def delete(self, event: Event, number: str) -> str:
        if not number.isdigit():
            raise UserError("usage: !quote delete <number>")
        quote = await self.storage.get(f"quote.{number}")
        if quote is None:
            raise UserError(f"there is no quote #{number}")
        if quote["by"] != user_name(event):
            raise UserError(f"quote #{number} was added by {quote['by']}; only they can delete it")
        await self.storage.delete(f"quote.{number}")
        return f"🗑 Deleted quote #{number}"


class UserError(Exception):
    """Something the user can fix; the text is the answer in chat."""


if __name__ == "__main__":
    run_plugin(QuotePlugin)
