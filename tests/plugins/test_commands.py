"""Declared commands in the SDK: the usage grammar, the check, the decorator's routing, and that a
plugin declaring nothing is served exactly as before (real plugin processes, the bot's router)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.rosey.errors import CommandDeclarationError, UsageError
from bot.rosey.plugins.commands import Command, CommandTable, ParamKind, command, parse_usage
from bot.rosey.plugins.plugin_interface import PluginInterface
from bot.rosey.testing import OutcomeKind, PluginHarness

FIXTURES = Path(__file__).parent / "fixtures"
CARDS = FIXTURES / "cards_plugin.py"
DECK = FIXTURES / "deck_plugin.py"
ECHO = Path(__file__).parents[2] / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
MY_PLUGIN = FIXTURES / "my_plugin.py"

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------- the grammar and the check


def test_usage_grammar() -> None:
    params = parse_usage("<dice> [times:int] [fast|slow] [rest...]")
    assert [(p.name, p.required, p.rest, p.kind, p.choices) for p in params] == [
        ("dice", True, False, ParamKind.WORD, ()),
        ("times", False, False, ParamKind.INT, ()),
        ("fast|slow", False, False, ParamKind.WORD, ("fast", "slow")),
        ("rest", False, True, ParamKind.WORD, ()),
    ]
    assert [str(p) for p in params] == ["<dice>", "[times]", "[fast|slow]", "[rest...]"]
    assert parse_usage("") == ()


@pytest.mark.parametrize(
    ("usage", "says"),
    [
        ("word", "is not <required>"),
        ("<a", "is not <required>"),
        ("<a]", "is not <required>"),
        ("[a] <b>", "follows an optional argument"),
        ("<a...> <b>", "must come last"),
        ("<a> <a>", "appears twice"),
        ("<a|>", "empty choice"),
        ("<a:float>", "is not <required>"),
        ("<a>\n<b>", "control character U+000A"),
        ("<" + "a" * 300 + ">", "at most 200"),
    ],
)
def test_bad_usages_are_refused(usage: str, says: str) -> None:
    with pytest.raises(CommandDeclarationError, match=re.escape(says)):
        parse_usage(usage)


def test_check_fits_words_to_the_usage() -> None:
    declared = Command("draw", usage="<count:int> [hearts|spades] [note...]")
    args = declared.check(["3", "Hearts", "for", "you"])
    assert dict(args) == {"count": 3, "hearts|spades": "hearts", "note": ("for", "you")}
    assert args.text("note") == "for you" and args.words == ("3", "Hearts", "for", "you")
    assert dict(declared.check(["1"])) == {"count": 1, "hearts|spades": None, "note": ()}
    assert args.number("count") == 3 and args.word("hearts|spades") == "hearts"
    left_out = declared.check(["1"])
    assert left_out.word("hearts|spades", "any") == "any" and left_out.number("missing", 7) == 7
    for words, says in [
        ([], "missing <count>"),
        (["x"], "count must be a whole number, not 'x'"),
        (["1", "clubs"], "'clubs' is not one of hearts, spades"),
    ]:
        with pytest.raises(UsageError, match=says):
            declared.check(words)
    with pytest.raises(UsageError, match="2 arguments too many"):
        Command("peek").check(["a", "b"])


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"name": "Roll"}, "is not a command name"),
        ({"name": "a b"}, "is not a command name"),
        ({"name": "x", "help": "two\nlines"}, "U+000A"),
        ({"name": "x", "help": "\x1b[2Jcleared"}, "U+001B"),
        ({"name": "x", "help": "evil\u202etxt.exe"}, "U+202E"),
        ({"name": "x", "help": "h" * 201}, "at most 200"),
        ({"name": "x", "aliases": "a"}, "aliases must be a tuple"),
        ({"name": "x", "aliases": ("A B",)}, "is not a command name"),
    ],
)
def test_bad_declarations_are_refused(kwargs: dict[str, object], says: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(CommandDeclarationError, match=re.escape(says)):
        Command(name, **kwargs)  # type: ignore[arg-type]


def test_table_reads_attribute_and_decorators() -> None:
    class Plugin(PluginInterface):
        plugin_name = "trivia"
        commands = {"start": Command(help="Start")}  # noqa: RUF012 - the dict form, as documented

        @command("answer", usage="<text...>", aliases=("a",))
        async def answer(self, event: object, args: object) -> str:
            return "ok"

        @command
        async def skip(self, event: object, args: object) -> None:
            return None

    table = CommandTable.of(Plugin, "trivia")
    assert [(c.name, c.handler) for c in table.commands] == [
        ("start", None),
        ("answer", "answer"),
        ("skip", "skip"),
    ]
    assert table.main is None
    found = table.match(["A", "paris"])
    assert found is not None and found[0].name == "answer" and found[1] == ["paris"]
    assert table.match(["nope"]) is None
    assert table.usage("?") == "usage: ?trivia start | ?trivia answer <text...> | ?trivia skip"


def test_table_refuses_clashes_and_ignores_foreign_commands_attributes() -> None:
    class Clash(PluginInterface):
        plugin_name = "clash"
        commands = (Command("go"), Command("stop", aliases=("go",)))

    with pytest.raises(CommandDeclarationError, match="'go' is declared twice"):
        CommandTable.of(Clash, "clash")

    class Mismatch(PluginInterface):
        plugin_name = "mismatch"
        commands = {"go": Command("stop")}  # noqa: RUF012

    with pytest.raises(CommandDeclarationError, match="make them match"):
        CommandTable.of(Mismatch, "mismatch")

    class Seed(PluginInterface):
        """A seed-era plugin with a ``commands`` attribute of its own: not a declaration."""

        plugin_name = "seed"
        commands = {"hello": "world"}  # type: ignore[dict-item]  # noqa: RUF012

        async def handle_command(self, event: object) -> None:
            return None

    assert CommandTable.of(Seed, "seed").commands == ()


# ---------------------------------------------------------------- through a real plugin process


async def test_decorated_commands_are_routed_and_checked(harness: PluginHarness) -> None:
    await harness.start_plugin("cards", CARDS)
    assert (await harness.command("cards", ["draw", "2", "SPADES"])).message == "drew 2 spades"
    assert (await harness.command("cards", ["d", "1"])).message == "drew 1 any"  # the alias
    said = await harness.command("cards", ["say", "hello", "there"])
    assert said.message == "hello there" and said.data["words"] == ["hello", "there"]
    assert (await harness.command("cards", ["even", "4"])).message == "even"
    assert (await harness.command("cards", ["calls_made"])).message == "4"

    # Wrong arguments: the usage line, as a normal reply, and the handler never runs.
    cases = {
        ("draw",): "usage: !cards draw <count> [hearts|spades] (missing <count>)",
        ("draw", "x"): "usage: !cards draw <count> [hearts|spades] (count must be a whole number, not 'x')",
        (
            "d",
            "1",
            "clubs",
        ): "usage: !cards draw <count> [hearts|spades] ('clubs' is not one of hearts, spades)",
        ("say",): "usage: !cards say <words...> (missing <words...>)",
        ("shuffle", "often"): "usage: !cards shuffle [times] (times must be a whole number, not 'often')",
        ("calls_made", "extra"): "usage: !cards calls_made (1 argument too many)",
    }
    for args, expected in cases.items():
        reply = await harness.command("cards", list(args))
        assert reply.kind is OutcomeKind.RESULT and reply.message == expected, (args, reply)
        assert reply.data.get("usage") is True
    assert (await harness.command("cards", ["calls_made"])).message == "4"

    # A handler's own UsageError: the usage line with its reason (the handler did run).
    odd = await harness.command("cards", ["even", "3"])
    assert odd.kind is OutcomeKind.RESULT and odd.message == "usage: !cards even <n> (3 is odd)"

    # Declared in `commands` only: checked, then handle_command with the arguments as typed.
    assert (await harness.command("cards", ["shuffle", "3"])).message == "handle_command: ['shuffle', '3']"
    # Nothing declared matches: handle_command, unchanged.
    assert (await harness.command("cards", ["fold"])).message == "handle_command: ['fold']"
    assert (await harness.command("cards")).message == "handle_command: []"


async def test_usage_lines_use_the_chat_prefix(harness: PluginHarness) -> None:
    await harness.start_plugin("cards", CARDS)
    reply = await harness.command("cards", ["draw"], context={"prefix": "?"})
    assert reply.message == "usage: ?cards draw <count> [hearts|spades] (missing <count>)"
    odd = await harness.command("cards", ["draw"], context={"prefix": "bad prefix"})
    assert odd.message.startswith("usage: !cards draw")  # not a usable prefix: the default


async def test_a_plugin_of_decorators_alone_needs_no_handle_command(harness: PluginHarness) -> None:
    await harness.start_plugin("deck", DECK)
    assert (await harness.command("deck", ["deal", "3"])).message == "dealt 3"
    assert (await harness.command("deck", ["peek"])).message == "ace"
    for args in ([], ["shuffle"]):
        reply = await harness.command("deck", args)
        assert reply.kind is OutcomeKind.RESULT
        assert reply.message == "usage: !deck deal [count] | !deck peek", reply.message


async def test_plugins_declaring_nothing_are_unchanged(harness: PluginHarness) -> None:
    """The seed's API: handle_command gets every command, with its arguments as sent."""
    await harness.start_plugin("myplugin", MY_PLUGIN)
    for args in ([], ["x"], ["--help"], ["help"]):
        reply = await harness.command("myplugin", args)
        assert reply.kind is OutcomeKind.RESULT and reply.message == f"Received: {args}", (args, reply)


async def test_a_malformed_declaration_stops_the_start_with_its_reason(
    harness: PluginHarness, tmp_path: Path
) -> None:
    bad = tmp_path / "bad_plugin.py"
    bad.write_text(
        "from bot.rosey.plugins.plugin_interface import PluginInterface, command, run_plugin\n"
        "class Bad(PluginInterface):\n"
        "    plugin_name = 'bad'\n"
        "    @command('go', usage='<a...> <b>')\n"
        "    async def go(self, event, args):\n"
        "        return 'never'\n"
        "if __name__ == '__main__':\n"
        "    run_plugin(Bad)\n"
    )
    with pytest.raises(Exception, match=r"<a\.\.\.> must come last"):
        await harness.start_plugin("bad", bad)


async def test_a_plugin_with_no_handler_and_no_declaration_still_fails_to_start(
    harness: PluginHarness, tmp_path: Path
) -> None:
    """handle_command is no longer abstract (decorators may replace it), but a plugin with
    neither has no way to answer: it fails at start, as the seed's abstract method made it."""
    empty = tmp_path / "empty_plugin.py"
    empty.write_text(
        "from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin\n"
        "class Empty(PluginInterface):\n"
        "    plugin_name = 'empty'\n"
        "if __name__ == '__main__':\n"
        "    run_plugin(Empty)\n"
    )
    with pytest.raises(Exception, match="Empty implements no handle_command and declares no @command"):
        await harness.start_plugin("empty", empty)
