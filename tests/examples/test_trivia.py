"""The trivia example: questions from its bundled file, scores in storage that survive a restart,
and one winner per question however many answer at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bot.rosey.testing import OutcomeKind, PluginHarness
from tests.examples.conftest import EXAMPLES, user

TRIVIA = EXAMPLES / "trivia_plugin.py"
QUESTIONS: list[dict[str, Any]] = json.loads((EXAMPLES / "trivia_questions.json").read_text())


def answer_to(message: str) -> str:
    """The first accepted answer of the question shown in ``message``."""
    for question in QUESTIONS:
        if question["q"] in message:
            return str(question["a"][0])
    raise AssertionError(f"no bundled question in {message!r}")


async def test_the_bundled_file_is_well_formed() -> None:
    assert len(QUESTIONS) >= 30
    assert len({q["q"] for q in QUESTIONS}) == len(QUESTIONS)
    assert all(
        isinstance(q["a"], list) and q["a"] and all(isinstance(a, str) for a in q["a"]) for q in QUESTIONS
    )


async def test_a_round_and_scores_that_survive_a_restart(harness: PluginHarness) -> None:
    await harness.start_plugin("trivia", TRIVIA)
    start = await harness.command("trivia", ["start"], user=user("ann"))
    assert start.ok and start.message.startswith("❓ "), start.message
    right = answer_to(start.message)
    again = await harness.command("trivia", ["start"], user=user("bob"))
    assert again.message.startswith("❓ A question is already open: ") and answer_to(again.message) == right

    wrong = await harness.command("trivia", ["a", "certainly", "not", "this"], user=user("bob"))
    assert wrong.ok and wrong.message.startswith("❌ ")
    # Case, punctuation and a leading article do not matter.
    won = await harness.command("trivia", ["answer", f"The {right.upper()}!"], user=user("ann"))
    assert won.message.startswith(f"✅ ann got it: {right}! ann has 1 point(s)"), won.message
    late = await harness.command("trivia", ["a", right], user=user("bob"))
    assert late.kind is OutcomeKind.ERROR and "no question is open here" in late.message

    second = await harness.command("trivia", ["start"], user=user("bob"))
    assert (await harness.command("trivia", ["a", answer_to(second.message)], user=user("bob"))).ok
    third = await harness.command("trivia", ["start"], user=user("bob"))
    await harness.command("trivia", ["a", answer_to(third.message)], user=user("ann"))
    top = await harness.command("trivia", ["top"])
    assert top.message == "🏆 1. ann (2), 2. bob (1)"

    # The scores live in storage: a new process of the plugin still has them.
    await harness.stop_plugin("trivia")
    await harness.start_plugin("trivia", TRIVIA)
    assert (await harness.command("trivia", ["top"])).message == "🏆 1. ann (2), 2. bob (1)"
    assert (await harness.command("trivia", ["score"], user=user("bob"))).message == "bob: 1 point(s)"
    assert (await harness.command("trivia", ["score"], user=user("cid"))).message == "cid: 0 point(s)"


async def test_an_open_question_survives_a_restart_and_skip_reveals_it(harness: PluginHarness) -> None:
    await harness.start_plugin("trivia", TRIVIA)
    start = await harness.command("trivia", ["start"], channel="#quiz night")
    await harness.stop_plugin("trivia")
    await harness.start_plugin("trivia", TRIVIA)
    # Each channel has its own question; this one is still open after the restart.
    assert (await harness.command("trivia", ["skip"], channel="elsewhere")).kind is OutcomeKind.ERROR
    skipped = await harness.command("trivia", ["skip"], channel="#quiz night")
    assert skipped.message == f"⏭ The answer was: {answer_to(start.message)}"


async def test_one_winner_when_many_answer_at_once(harness: PluginHarness) -> None:
    await harness.start_plugin("trivia", TRIVIA)
    right = answer_to((await harness.command("trivia", ["start"])).message)
    players = [f"p{n}" for n in range(12)]
    replies = await asyncio.gather(
        *(harness.command("trivia", ["a", right], user=user(p), timeout=20) for p in players)
    )
    winners = [r for r in replies if r.message.startswith("✅ ")]
    assert len(winners) == 1, [r.message for r in replies]
    assert all(
        r.message.startswith(("⌛ ", "⚠️ trivia: no question is open")) for r in replies if r not in winners
    )
    top = await harness.command("trivia", ["top"])
    assert top.message.count("(1)") == 1 and "(2)" not in top.message


async def test_usage_and_errors(harness: PluginHarness) -> None:
    await harness.start_plugin("trivia", TRIVIA)
    assert (await harness.command("trivia")).message.startswith("usage: !trivia start")
    unknown = await harness.command("trivia", ["explode"])
    assert unknown.message.startswith("unknown subcommand 'explode'; usage: ")
    no_round = await harness.command("trivia", ["a", "paris"])
    assert no_round.message == "⚠️ trivia: no question is open here; ask for one with !trivia start"
    await harness.command("trivia", ["start"])
    empty = await harness.command("trivia", ["a"])
    assert empty.message == "usage: !trivia answer <guess...> (missing <guess...>)"  # said by the SDK
    assert (await harness.command("trivia", ["top"])).message == "🏆 No scores yet: !trivia start"


async def test_runs_under_the_sandbox(harness: PluginHarness) -> None:
    # Under rosey run's sandbox the plugin reads only its own directory: the question file is there.
    await harness.start_plugin("trivia", TRIVIA, sandbox=True)
    start = await harness.command("trivia", ["start"])
    assert start.ok and answer_to(start.message)
