"""Dice: ``!roll 2d6+3`` -- the smallest useful plugin, with user-facing errors.

What it shows plugin authors:

* the command word is the plugin's name: this plugin is named ``roll``, so people type ``!roll``;
* parse the arguments yourself and answer a bad one with a usage line (``publish_error``), never
  with a traceback;
* bound what a user can make your plugin do (here: how many dice, how many sides), so one
  ``!roll 999999999d999999999`` cannot keep the plugin busy.

Usage::

    !roll              -> one six-sided die
    !roll 2d6+3        -> 2d6+3: [4, 1] +3 = 8
    !roll d20 3d8-2    -> several expressions in one command
"""

from __future__ import annotations

import random
import re
from typing import Any

from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import Command, PluginInterface, run_plugin

#: Limits: generous for any table-top game, small enough to answer instantly.
MAX_DICE = 100  # dice in one expression
MAX_SIDES = 1000  # sides of one die
MAX_MODIFIER = 10_000  # the +N / -N part
MAX_EXPRESSIONS = 5  # expressions in one command

USAGE = (
    f"usage: !roll [NdS[+M|-M]] ... e.g. !roll 2d6+3, !roll d20 "
    f"(at most {MAX_DICE} dice of {MAX_SIDES} sides)"
)

# "2d6+3", "d20", "4D10-1": count (optional), 'd', sides, optional modifier.
_DICE = re.compile(r"(?P<count>\d*)[dD](?P<sides>\d+)(?:(?P<sign>[+-])(?P<mod>\d+))?")


class DiceError(ValueError):
    """A roll the user asked for that cannot be rolled; the text is shown in chat."""


def roll(expression: str, rng: random.Random) -> str:
    """Roll one expression such as ``2d6+3`` and describe the result, e.g. ``2d6+3: [4, 1] +3 = 8``."""
    match = _DICE.fullmatch(expression.strip())
    if match is None:
        raise DiceError(f"'{expression}' is not a dice expression; {USAGE}")
    count = int(match["count"] or 1)
    sides = int(match["sides"])
    modifier = int(match["mod"] or 0) * (-1 if match["sign"] == "-" else 1)
    if count < 1:
        raise DiceError("roll at least one die (1d6, not 0d6)")
    if count > MAX_DICE:
        raise DiceError(f"{count} dice is too many: roll 1 to {MAX_DICE} dice at a time")
    if not 2 <= sides <= MAX_SIDES:
        raise DiceError(f"a die needs 2 to {MAX_SIDES} sides, not {sides}")
    if abs(modifier) > MAX_MODIFIER:
        raise DiceError(f"the modifier must be between -{MAX_MODIFIER} and +{MAX_MODIFIER}")
    rolls = [rng.randint(1, sides) for _ in range(count)]
    total = sum(rolls) + modifier
    shown = f"{rolls}" if count <= 20 else f"[{count} dice]"
    bonus = f" {match['sign']}{match['mod']}" if modifier else ""
    return f"{expression}: {shown}{bonus} = {total}"


class DicePlugin(PluginInterface):
    """``!roll NdS+M``: roll dice."""

    plugin_name = "roll"
    # Declared for !help and `rosey plugins list`; every word is checked by roll() below.
    commands = (Command("roll", usage="[NdS...]", help="Roll dice, e.g. !roll 2d6+3 or !roll d20 3d8-2"),)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # One generator per process; SystemRandom would work too, a game needs no more.
        self.rng = random.Random()

    async def handle_command(self, event: Event) -> None:
        args = event.data.get("args") or ["1d6"]
        if args[0] in ("help", "-h", "--help"):
            await self.publish_result({"message": USAGE}, event.correlation_id)
            return
        if len(args) > MAX_EXPRESSIONS:
            await self.publish_error(
                f"at most {MAX_EXPRESSIONS} rolls at once; {USAGE}", event.correlation_id
            )
            return
        try:
            lines = [roll(arg, self.rng) for arg in args]
        except DiceError as exc:
            # Expected mistakes get a clear answer; anything else would be a bug, and the SDK
            # turns an exception into an error reply for us.
            await self.publish_error(str(exc), event.correlation_id)
            return
        await self.publish_result({"message": "🎲 " + " | ".join(lines)}, event.correlation_id)


if __name__ == "__main__":
    run_plugin(DicePlugin)
