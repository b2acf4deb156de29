"""The quote example: add, recall, random, search and delete, all in plugin storage."""

from __future__ import annotations

import asyncio
import re

from bot.rosey.testing import OutcomeKind, PluginHarness
from tests.examples.conftest import EXAMPLES, user

QUOTE = EXAMPLES / "quote_plugin.py"
BOOK = [
    "Premature optimization is the root of all evil -- Knuth",
    "Simple is better than complex -- The Zen of Python",
    "Talk is cheap. Show me the code -- Torvalds",
    "Evil is in the details, and so is the devil",
]


async def test_add_get_random_search(harness: PluginHarness) -> None:
    await harness.start_plugin("quote", QUOTE)
    assert (await harness.command("quote")).message == "📭 No quotes yet: add one with !quote add <text>"
    for number, text in enumerate(BOOK, 1):
        added = await harness.command("quote", ["add", *text.split()], user=user("ann"))
        assert added.message == f"📝 Added quote #{number}"
    assert (await harness.command("quote", ["3"])).message == f"💬 #3: {BOOK[2]}  (added by ann)"
    assert (await harness.command("quote", ["get", "2"])).message.startswith(f"💬 #2: {BOOK[1]}")
    assert (await harness.command("quote", ["count"])).message == "📚 4 quote(s)"

    seen = set()
    for _ in range(12):
        shown = (await harness.command("quote", ["random"])).message
        match = re.fullmatch(r"💬 #(\d): (.*)  \(added by ann\)", shown)
        assert match and BOOK[int(match[1]) - 1] == match[2], shown
        seen.add(match[1])
    assert len(seen) > 1  # 12 draws from 4 (a 1-in-4^11 chance of failing by bad luck)

    evil = await harness.command("quote", ["search", "EVIL"])
    assert evil.message.splitlines() == [
        "🔍 2 match(es):",
        f"💬 #1: {BOOK[0]}  (added by ann)",
        f"💬 #4: {BOOK[3]}  (added by ann)",
    ]
    both = await harness.command("quote", ["search", "evil", "devil"])  # every word must be there
    assert both.message.splitlines()[1:] == [f"💬 #4: {BOOK[3]}  (added by ann)"]
    assert (await harness.command("quote", ["search", "kittens"])).message == "🔍 No quote matches 'kittens'"

    # The book is in storage: a restarted plugin has it, and numbering goes on.
    await harness.stop_plugin("quote")
    await harness.start_plugin("quote", QUOTE)
    assert (await harness.command("quote", ["add", "one", "more"])).message == "📝 Added quote #5"


async def test_concurrent_adds_get_distinct_numbers(harness: PluginHarness) -> None:
    await harness.start_plugin("quote", QUOTE)
    replies = await asyncio.gather(
        *(harness.command("quote", ["add", f"quote {n}"], timeout=20) for n in range(20))
    )
    numbers = sorted(int(r.message.rsplit("#", 1)[1]) for r in replies)
    assert numbers == list(range(1, 21))
    assert (await harness.command("quote", ["count"])).message == "📚 20 quote(s)"


async def test_delete_and_errors(harness: PluginHarness) -> None:
    await harness.start_plugin("quote", QUOTE)
    await harness.command("quote", ["add", "mine"], user=user("ann"))
    refused = await harness.command("quote", ["delete", "1"], user=user("bob"))
    assert refused.message == "⚠️ quote: quote #1 was added by ann; only they can delete it"
    assert (await harness.command("quote", ["delete", "1"], user=user("ann"))).message == "🗑 Deleted quote #1"
    cases = {
        ("1",): "there is no quote #1",
        ("add", "x" * 501): "that quote is 501 characters; at most 500",
    }
    for args, expected in cases.items():
        reply = await harness.command("quote", list(args))
        assert reply.kind is OutcomeKind.ERROR and reply.message == f"⚠️ quote: {expected}", (args, reply)
    # Arguments that do not fit a declared command: the SDK answers with its usage line.
    usage = {
        ("delete", "x"): "usage: !quote delete <number> (number must be a whole number, not 'x')",
        ("add",): "usage: !quote add <text...> (missing <text...>)",
        ("search",): "usage: !quote search <words...> (missing <words...>)",
    }
    for args, expected in usage.items():
        reply = await harness.command("quote", list(args))
        assert reply.kind is OutcomeKind.RESULT and reply.message == expected, (args, reply)
    assert (await harness.command("quote", ["what"])).message.startswith("unknown subcommand 'what'; usage: ")
