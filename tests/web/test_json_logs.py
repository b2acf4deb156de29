"""`rosey run --log-format json`: every line on stderr is one JSON object, with the plugin and the
correlation id where the record is about one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import start_run

from .conftest import write_plugin
from .test_metrics import chat

pytestmark = pytest.mark.timeout(60)

KEYS = {"time", "level", "component", "plugin", "correlation_id", "message"}


async def test_json_logs_one_object_per_line(tmp_path: Path) -> None:
    write_plugin(
        tmp_path / "plugins", "echo", '        print("hello\\x1b[31m from on_start\\nsecond", flush=True)'
    )
    bot = await start_run(tmp_path, "--log-format", "json", "--log-level", "debug")
    try:
        replies = await chat(tmp_path, "!echo fail")
        assert replies[0].data["kind"] == "error"
        failed_cid = replies[0].correlation_id
    finally:
        bot.proc.terminate()
        await bot.proc.wait()
    lines = (tmp_path / "rosey-run.log").read_text().splitlines()
    assert lines
    records = []
    for line in lines:
        record = json.loads(line)  # every line, including "Rosey stopping..."
        assert KEYS <= set(record), record
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}
        assert record["time"].endswith("Z") and "T" in record["time"]
        records.append(record)
    output = [r for r in records if r["plugin"] == "echo" and "from on_start" in r["message"]]
    assert output and output[0]["component"] == "rosey.plugin_output", records
    assert "\x1b" not in output[0]["message"], output  # the plugin's escape shown, not obeyed
    about_command = [r for r in records if r["correlation_id"] == failed_cid]
    assert about_command and about_command[0]["plugin"] == "echo", records
    assert any(r["message"] == "Rosey stopping..." for r in records)
