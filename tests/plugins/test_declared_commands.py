"""The host reads declared commands from source, never running plugin code: literal values only,
hostile declarations (computed, huge, control characters) reported as problems, not guessed."""

from __future__ import annotations

import builtins
import sys
import time
from pathlib import Path

import pytest

from bot.rosey.catalog import build_catalog
from bot.rosey.config import load_config
from bot.rosey.plugins.declared_commands import read_declared_commands

EXAMPLES = Path(__file__).parents[2] / "bot" / "rosey" / "plugins" / "examples"
FIXTURES = Path(__file__).parent / "fixtures"

pytestmark = pytest.mark.timeout(60)

HEADER = "from bot.rosey.plugins.plugin_interface import Command, PluginInterface, command\n"


def write(tmp_path: Path, body: str, name: str = "p_plugin.py") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body)
    return path


@pytest.mark.parametrize(
    ("plugin", "file", "first"),
    [
        ("roll", "dice_plugin.py", "!roll [NdS...]"),
        ("echo", "echo_plugin.py", "!echo [text...]"),
        ("trivia", "trivia_plugin.py", "!trivia start"),
        ("quote", "quote_plugin.py", "!quote random"),
        ("remind", "remind_plugin.py", "!remind <when> <text...>"),
        ("weather", "weather_plugin.py", "!weather <city...>"),
        ("calendar", "calendar_plugin.py", "!calendar <YYYY-MM-DD> <title...>"),
    ],
)
def test_the_examples_are_read_without_problems(plugin: str, file: str, first: str) -> None:
    declared = read_declared_commands(plugin, EXAMPLES / file)
    assert declared.problems == ()
    assert declared.commands and declared.commands[0].usage_line(plugin) == first
    assert all(c.help for c in declared.commands)


def test_decorators_attribute_aliases_and_same_module_bases(tmp_path: Path) -> None:
    declared = read_declared_commands("cards", FIXTURES / "cards_plugin.py")
    assert declared.problems == ()
    assert [c.usage_line("cards") for c in declared.commands] == [
        "!cards shuffle [times]",
        "!cards draw <count> [hearts|spades]",
        "!cards say <words...>",
        "!cards even <n>",
        "!cards calls_made",
    ]
    assert declared.find("D") is declared.commands[1] and declared.summary.startswith("Cards: a deck")
    path = write(
        tmp_path,
        "class Base(PluginInterface):\n"
        "    commands = (Command('start', help='from the base'), Command('stop'))\n"
        "    @command('peek', help='base peek')\n"
        "    async def peek(self, e, a): ...\n"
        "class Game(Base):\n"
        "    plugin_name = 'game'\n"
        "    commands = (Command('start', help='from the subclass'),)\n"
        "    async def peek(self, e, a): ...  # overridden without the decorator: no command\n",
    )
    game = read_declared_commands("game", path)
    assert [(c.name, c.help) for c in game.commands] == [("start", "from the subclass")]


def test_non_literal_declarations_are_problems_not_guesses(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "HELP = 'from a constant'\n"
        "OPTS = {'help': 'x'}\n"
        "class P(PluginInterface):\n"
        "    plugin_name = 'p'\n"
        "    commands = {\n"
        "        'fine': Command(help='a literal'),\n"
        "        'named': Command(help=HELP),\n"
        "        'fstring': Command(help=f'{HELP}!'),\n"
        "        'joined': Command(help='a' + 'b'),\n"
        "        'aliases': Command(aliases=tuple(['x'])),\n"
        "        'other': print('not a Command'),\n"
        "    }\n"
        "    @command(**OPTS)\n"
        "    async def splat(self, e, a): ...\n"
        "    @command('k', usage=HELP)\n"
        "    async def k(self, e, a): ...\n",
    )
    declared = read_declared_commands("p", path)
    assert [c.name for c in declared.commands] == ["fine"]
    text = "\n".join(declared.problems)
    for expected in (
        "command 'named': help is not a literal string",
        "command 'fstring': help is not a literal string",
        "command 'joined': help is not a literal string",
        "command 'aliases': aliases is not a literal tuple of strings",
        "command 'other': not a Command(...)",
        "@command on splat(): **OPTS is not literal",
        "@command on k(): usage is not a literal string",
    ):
        assert expected in text, text
    assert all(line.startswith(f"{path}:") for line in declared.problems)
    computed = write(
        tmp_path, "class Q(PluginInterface):\n    plugin_name = 'q'\n    commands = make()\n", "q.py"
    )
    assert "commands is not a literal dict or tuple" in read_declared_commands("q", computed).problems[0]


def test_hostile_declarations_are_refused_without_running_code(tmp_path: Path) -> None:
    """Huge, control characters, bidi overrides, and code that would run if imported: the host
    reads it all (quickly), keeps what is valid, and runs nothing."""
    entries = ",\n".join(f"        'c{i}': Command(help='{i}')" for i in range(5000))
    path = write(
        tmp_path,
        "import builtins\n"
        "builtins.ROSEY_HOSTILE_DECLARATION_RAN = True  # proof, if the host ever imported this\n"
        "class Sneaky(PluginInterface):\n"
        '    """\x1b[2J\x1b[31mcleared your terminal"""\n'
        "    plugin_name = 'sneaky'\n"
        "    commands = {\n" + entries + "\n    }\n"
        "    @command('ansi', help='\\x1b[2Jgone')\n"
        "    async def ansi(self, e, a): ...\n"
        "    @command('bidi', help='safe\\u202etxt.exe')\n"
        "    async def bidi(self, e, a): ...\n"
        "    @command('newline', usage='<a>\\n<b>')\n"
        "    async def newline(self, e, a): ...\n"
        f"    @command('huge', help='{'h' * 2_000_000}')\n"
        "    async def huge(self, e, a): ...\n",
    )
    started = time.monotonic()
    declared = read_declared_commands("sneaky", path)
    elapsed = time.monotonic() - started
    assert len(declared.commands) == 64  # MAX_COMMANDS: the first 64 are kept
    text = "\n".join(declared.problems)
    assert "commands: 5000 declared; at most 64 are read" in text
    assert "command 'ansi': help holds the control character U+001B" in text
    assert "command 'bidi': help holds the control character U+202E" in text
    assert "command 'newline': usage holds the control character U+000A" in text
    assert "command 'huge': help is 2000000 characters; at most 200" in text
    assert declared.summary == ""  # the docstring holds escapes: not shown
    assert "\x1b" not in text and "\u202e" not in text and "h" * 300 not in text
    assert not hasattr(builtins, "ROSEY_HOSTILE_DECLARATION_RAN")
    assert not any("p_plugin" in name for name in sys.modules)
    assert elapsed < 30, elapsed  # a bound, not a benchmark: it must not hang


def test_unreadable_files_give_no_commands(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("class P(:\n")
    assert read_declared_commands("p", broken).commands == ()
    deep = tmp_path / "deep.py"
    deep.write_text("x = " + "(" * 100_000 + ")" * 100_000 + "\n")
    assert read_declared_commands("p", deep).commands == ()
    assert read_declared_commands("p", tmp_path / "missing.py").commands == ()


def test_the_catalog_reports_problems_and_a_plugin_named_help(tmp_path: Path) -> None:
    write(tmp_path, "class H(PluginInterface):\n    plugin_name = 'help'\n", "help_plugin.py")
    write(
        tmp_path,
        "class S(PluginInterface):\n    plugin_name = 'sneaky'\n    commands = {'x': Command(help=f'{1}')}\n",
        "sneaky_plugin.py",
    )
    (tmp_path / "rosey.toml").write_text(
        f'[rosey]\nentry_points = false\nplugin_dirs = ["{tmp_path}"]\n'
        f'[plugins.roll]\npath = "{EXAMPLES / "dice_plugin.py"}"\n'
    )
    catalog = build_catalog(load_config(tmp_path / "rosey.toml"))
    assert catalog.commands["roll"].commands[0].name == "roll"
    assert catalog.commands["sneaky"].commands == ()
    problems = "\n".join(catalog.problems)
    assert "plugin sneaky: command 'x': help is not a literal string" in problems
    assert (
        "plugin 'help' cannot be reached from chat: !help is Rosey's built-in; rename the plugin" in problems
    )
