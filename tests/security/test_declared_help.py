"""``!help`` and declared commands through the real bot (RoseyApp, its router and access rules,
sandboxed plugin processes), under both launchers, beside a plugin whose declarations are hostile."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.core.subjects import Subjects
from tests.examples.conftest import EXAMPLES, Inbox
from tests.security.conftest import StartRosey

CARDS = Path(__file__).parents[1] / "plugins" / "fixtures" / "cards_plugin.py"

# Statically: an ANSI docstring, 200 commands, escapes and a bidi override in help texts, computed
# help. At run time it declares nothing (its `command` is its own no-op and `commands` is reset
# after the class), so it starts and serves; and importing it would leave a mark on builtins.
SNEAKY = (
    "import builtins\n"
    "builtins.ROSEY_SNEAKY_RAN = True  # the proof, were the host ever to import this file\n"
    "from bot.rosey.plugins.plugin_interface import Command, PluginInterface, run_plugin\n"
    "def command(*args, **kwargs):  # reads like the SDK's decorator; does nothing\n"
    "    return lambda method: method\n"
    "class Sneaky(PluginInterface):\n"
    '    """\x1b[2J\x1b[31mcleared your screen"""\n'
    "    plugin_name = 'sneaky'\n"
    "    commands = {\n" + "".join(f"        'c{i}': Command(help='{i}'),\n" for i in range(200)) + "    }\n"
    "    @command('ansi', help='\\x1b[2Jgone')\n"
    "    async def ansi(self, event, args): ...\n"
    "    @command('bidi', help='safe\\u202etxt.exe')\n"
    "    async def bidi(self, event, args): ...\n"
    "    @command('computed', help=f'{1 + 1}')\n"
    "    async def computed(self, event, args): ...\n"
    "    async def handle_command(self, event):\n"
    "        await self.publish_result({'message': 'sneaky ok'}, event.correlation_id)\n"
    "Sneaky.commands = ()\n"
    "if __name__ == '__main__':\n"
    "    run_plugin(Sneaky)\n"
)


@pytest.mark.timeout(120)
async def test_help_and_usage_through_the_real_router(
    start_rosey: StartRosey, launcher: str, tmp_path: Path
) -> None:
    sneaky = tmp_path / "sneaky_plugin.py"
    sneaky.write_text(SNEAKY)
    rosey = await start_rosey(
        {
            "roll": {"path": str(EXAMPLES / "dice_plugin.py")},
            "cards": {"path": str(CARDS)},
            "echo": {"path": str(EXAMPLES / "echo_plugin.py"), "min_role": "op"},
            "sneaky": {"path": str(sneaky)},
        },
        launcher=launcher,
        extra_toml='[chat]\nprefix = "?"\n',
    )
    replies = await Inbox.open(rosey.core, Subjects.chat_send("testchat"))

    async def say(text: str, *roles: str) -> dict[str, Any]:
        user = {"id": "ann", "name": "ann", "roles": list(roles)}
        data = {"text": text, "user": user, "channel": "#games", "platform": "testchat"}
        sent = await rosey.core.publish(Subjects.event("message"), data, "test-adapter")
        reply = await replies.next(timeout=15)
        assert reply.data["in_reply_to"] == sent.id, reply.data
        return dict(reply.data)

    # The overview, for a plain user: one line per command, echo (op only) left out.
    overview = await say("?help")
    text = overview["text"]
    assert overview["kind"] == "result"
    lines = text.splitlines()
    assert lines[0] == "Commands you can use (?help NAME for usage):"
    for expected in (
        "?cards shuffle — Shuffle the deck",
        "?cards draw — Draw cards",
        "?cards calls_made",
        "?roll — Roll dice, e.g. !roll 2d6+3 or !roll d20 3d8-2",
        "?sneaky c0 — 0",
        "?sneaky … 57 more: ?help sneaky",  # 64 read, 7 shown: no plugin crowds out the others
    ):
        assert expected in lines, (expected, text)
    assert not any(line.startswith("?echo") for line in lines), text
    assert "\x1b" not in text and "\u202e" not in text and "cleared" not in text

    # An op sees echo too; a plain user asking for it gets the router's own refusal.
    assert "?echo — Repeat your words back" in (await say("?help", "op"))["text"].splitlines()
    assert (await say("?help echo"))["text"] == "?echo needs the op role (you have user)"
    assert (await say("?echo hi"))["text"] == "?echo needs the op role (you have user)"

    # One command's usage, by name, subcommand and prefix.
    assert (await say("?help cards draw"))["text"] == (
        "usage: ?cards draw <count> [hearts|spades] (also: d) — Draw cards"
    )
    assert (await say("?help ?roll"))[
        "text"
    ] == "usage: ?roll [NdS...] — Roll dice, e.g. !roll 2d6+3 or !roll d20 3d8-2"
    assert (await say("?help nosuch"))["text"] == "no command ?nosuch; ?help lists the commands you can use"

    # Wrong arguments: the usage line (with this chat's prefix) and no handler ran.
    wrong = await say("?cards draw x")
    assert wrong["kind"] == "result"
    assert (
        wrong["text"] == "usage: ?cards draw <count> [hearts|spades] (count must be a whole number, not 'x')"
    )
    assert (await say("?cards calls_made"))["text"] == "0"
    assert (await say("?cards draw 2 hearts"))["text"] == "drew 2 hearts"

    # The hostile plugin serves, its declarations are problems on record, and none of it ran here.
    assert (await say("?sneaky"))["text"] == "sneaky ok"
    problems = "\n".join(rosey.app.catalog.problems)
    for expected in (
        "plugin sneaky: commands: 200 declared; at most 64 are read",
        "plugin sneaky: command 'ansi': help holds the control character U+001B",
        "plugin sneaky: command 'bidi': help holds the control character U+202E",
        "plugin sneaky: @command on computed(): help is not a literal string",
    ):
        assert expected in problems, problems
    assert not hasattr(builtins, "ROSEY_SNEAKY_RAN")
