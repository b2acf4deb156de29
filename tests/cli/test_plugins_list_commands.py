"""`rosey plugins list` shows each plugin's declared commands, from source, without a running bot
and without running any plugin code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import rosey

EXAMPLES = Path(__file__).parents[2] / "bot" / "rosey" / "plugins" / "examples"

pytestmark = pytest.mark.timeout(60)


async def test_plugins_list_shows_commands(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "sneaky_plugin.py").write_text(
        f"open({str(marker)!r}, 'w').close()  # would prove the CLI ran this file\n"
        "from bot.rosey.plugins.plugin_interface import Command, PluginInterface\n"
        "HELP = 'computed'\n"
        "class Sneaky(PluginInterface):\n"
        "    plugin_name = 'sneaky'\n"
        "    commands = (\n"
        "        Command('ok', help='fine'), Command('bad', help=HELP), Command('esc', help='\\x1b[2J')\n"
        "    )\n"
    )
    (tmp_path / "rosey.toml").write_text(
        '[rosey]\nentry_points = false\nplugin_dirs = ["plugins"]\n'
        '[chat]\nprefix = "?"\n'
        f'[plugins.roll]\npath = "{EXAMPLES / "dice_plugin.py"}"\n'
        f'[plugins.trivia]\npath = "{EXAMPLES / "trivia_plugin.py"}"\n'
    )
    code, out, err = await rosey("plugins", "list", cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    start = lines.index("commands:")
    assert lines[start + 1 :] == [  # in the table's order
        "  sneaky: ?sneaky ok — fine",
        "  roll: ?roll [NdS...] — Roll dice, e.g. !roll 2d6+3 or !roll d20 3d8-2",
        "  trivia: ?trivia start — Ask a new question in this channel",
        "  trivia: ?trivia answer <guess...> — Answer the open question",
        "  trivia: ?trivia skip — Give up on the open question and show its answer",
        "  trivia: ?trivia top — The best players",
        "  trivia: ?trivia score — Your own score",
    ], out
    assert "plugin sneaky: command 'bad': help is not a literal string" in err
    assert "plugin sneaky: command 'esc': help holds the control character U+001B" in err
    assert "\x1b" not in out + err

    code, out, err = await rosey("plugins", "list", "--json", cwd=tmp_path)
    assert code == 0, err
    plugins = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert plugins["roll"]["commands"] == [
        {"name": "roll", "usage": "?roll [NdS...]", "help": "Roll dice, e.g. !roll 2d6+3 or !roll d20 3d8-2"}
    ]
    assert [c["name"] for c in plugins["trivia"]["commands"]] == ["start", "answer", "skip", "top", "score"]
    assert not marker.exists()
