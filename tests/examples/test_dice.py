"""The dice example (``!roll``): results within the rules, clear errors for what cannot be rolled."""

from __future__ import annotations

import re

from bot.rosey.testing import OutcomeKind, PluginHarness
from tests.examples.conftest import EXAMPLES

DICE = EXAMPLES / "dice_plugin.py"


async def test_roll_an_expression(harness: PluginHarness) -> None:
    await harness.start_plugin("roll", DICE)
    for _ in range(20):
        reply = await harness.command("roll", ["2d6+3"])
        assert reply.ok, reply.message
        match = re.fullmatch(r"🎲 2d6\+3: \[(\d+), (\d+)\] \+3 = (\d+)", reply.message)
        assert match, reply.message
        a, b, total = (int(g) for g in match.groups())
        assert 1 <= a <= 6 and 1 <= b <= 6 and total == a + b + 3


async def test_defaults_several_rolls_and_help(harness: PluginHarness) -> None:
    await harness.start_plugin("roll", DICE)
    assert re.fullmatch(r"🎲 1d6: \[[1-6]\] = [1-6]", (await harness.command("roll")).message)
    both = await harness.command("roll", ["d20", "3D4-1"])
    assert re.fullmatch(r"🎲 d20: \[\d+\] = \d+ \| 3D4-1: \[\d, \d, \d\] -1 = \d+", both.message), (
        both.message
    )
    many = await harness.command("roll", ["100d2"])
    assert many.ok and "[100 dice]" in many.message
    assert (await harness.command("roll", ["help"])).message.startswith("usage: !roll")


async def test_errors_say_what_is_wrong(harness: PluginHarness) -> None:
    await harness.start_plugin("roll", DICE)
    cases = {
        ("banana",): "'banana' is not a dice expression; usage: !roll",
        ("101d6",): "101 dice is too many: roll 1 to 100 dice at a time",
        ("0d6",): "roll at least one die",
        ("2d1",): "a die needs 2 to 1000 sides, not 1",
        ("1d99999999999",): "a die needs 2 to 1000 sides",
        ("1d6+99999",): "the modifier must be between -10000 and +10000",
        ("d6", "d6", "d6", "d6", "d6", "d6"): "at most 5 rolls at once",
    }
    for args, expected in cases.items():
        reply = await harness.command("roll", list(args))
        assert reply.kind is OutcomeKind.ERROR, (args, reply)
        assert reply.message.startswith("⚠️ roll: ") and expected in reply.message, (args, reply.message)
