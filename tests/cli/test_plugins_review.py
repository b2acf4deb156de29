"""``rosey plugins review NAME`` without a running bot, and the "not granted" line in ``rosey status``
and ``rosey logs`` of a running one (the real ``rosey`` command, as a user runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.rosey.plugins.plugin_registry import DEFAULT_PLUGINS_DIR

from .conftest import rosey, start_run

pytestmark = pytest.mark.timeout(90)

EXAMPLES = (Path(__file__).resolve().parents[2] / DEFAULT_PLUGINS_DIR / "examples").resolve()

# The grants docs/plugins/examples.md gives the examples.
RULE = (
    '{ url = "https://api.openweathermap.org/data/2.5/", methods = ["GET"], '
    'secret = "weather_key", inject = "query:appid" }'
)
DOCUMENTED = f"""\
[rosey]
plugin_dirs = ["{EXAMPLES}"]
entry_points = false

[secrets.weather_key]
env = "OWM_API_KEY"

[plugins.weather.http]
allow = [{RULE}]
requests_per_minute = 60
"""

ASKER = """\
from bot.rosey.plugins.permissions import Http, Requests
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class Asker(PluginInterface):
    plugin_name = "asker"
    requests = Requests(
        read_paths=["/etc/shadow"], http=[Http("api.example.org", reason="the \\x1b[31mweather")]
    )

    async def handle_command(self, event):
        await self.publish_result({"message": "hi"}, event.correlation_id)


if __name__ == "__main__":
    run_plugin(Asker)
"""


async def test_the_examples_with_their_documented_grants(tmp_path: Path) -> None:
    (tmp_path / "rosey.toml").write_text(DOCUMENTED)
    for name in ("weather", "trivia", "quote", "calendar", "roll", "echo"):
        code, out, err = await rosey("plugins", "review", name, cwd=tmp_path)
        assert code == 0, (name, out, err)
    code, out, _ = await rosey("plugins", "review", "weather", cwd=tmp_path)
    assert "GET https://api.openweathermap.org/data/2.5/ (current weather by city)" in out
    assert "every request is granted" in out
    # remind asks to speak unprompted; the operator decides (examples.md shows the grant).
    code, out, _ = await rosey("plugins", "review", "remind", "--suggest", cwd=tmp_path)
    assert code == 1
    assert "publish  rosey.chat.*.send" in out and "NOT GRANTED" in out
    assert '[plugins.remind]\npublish = ["rosey.chat.*.send"]' in out
    code, out, _ = await rosey("plugins", "review", "remind", "--json", cwd=tmp_path)
    data = json.loads(out)
    assert (code, data["not_granted"], data["complete"]) == (1, ["publish rosey.chat.*.send"], False)


async def test_exit_codes_and_errors(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "asker.py").write_text(ASKER)
    code, out, err = await rosey("plugins", "review", "nobody", cwd=tmp_path)
    assert code == 2 and "no plugin named 'nobody' (known: asker)" in err and out == ""
    code, out, err = await rosey("plugins", "review", "asker", cwd=tmp_path)
    assert code == 1, err
    assert "read_paths  /etc/shadow" in out
    assert "\x1b" not in out and "\\x1b[31mweather" in out  # the plugin's text cannot drive the terminal
    (tmp_path / "rosey.toml").write_text(
        '[plugins.asker]\nread_paths = ["/etc/shadow"]\n'
        '[plugins.asker.http]\nallow = [{ url = "https://api.example.org/" }]\n'
    )
    code, out, err = await rosey("plugins", "review", "asker", cwd=tmp_path)
    assert code == 0, out + err
    (tmp_path / "rosey.toml").write_text("[plugins.asker]\nread_paths = 3\n")
    code, _, err = await rosey("plugins", "review", "asker", cwd=tmp_path)
    assert code == 2 and "plugins.asker.read_paths" in err


async def test_status_and_logs_of_a_running_bot_name_what_was_not_granted(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "asker.py").write_text(ASKER)
    run = await start_run(tmp_path)
    try:
        code, out, err = await rosey("status", cwd=tmp_path)
        assert code == 0, err
        expected = (
            "asker: not granted: read_paths /etc/shadow; "
            "http GET https://api.example.org/ (the \\x1b[31mweather)"
        )
        assert expected in out.splitlines(), out
        code, out, _ = await rosey("status", "--json", cwd=tmp_path)
        (row,) = [p for p in json.loads(out)["plugins"] if p["name"] == "asker"]
        assert row["not_granted"] == [
            "read_paths /etc/shadow",
            "http GET https://api.example.org/ (the \x1b[31mweather)",
        ]
        code, out, _ = await rosey("logs", "asker", cwd=tmp_path)
        host = [line for line in out.splitlines() if line.startswith("[rosey] ")]
        assert len(host) == 1 and "read_paths /etc/shadow" in host[0], out
    finally:
        await rosey("shutdown", cwd=tmp_path)
        await run.proc.wait()
    code, out, err = await rosey("logs", "asker", cwd=tmp_path)  # from the log file, bot stopped
    assert len([line for line in out.splitlines() if line.startswith("[rosey] not granted")]) == 1, out + err
