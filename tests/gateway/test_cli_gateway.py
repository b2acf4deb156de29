"""`rosey logs --gateway` and the gateway's counters in `rosey status --json`, with the real CLI."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from tests.cli.conftest import rosey, start_run
from tests.gateway.http_server import LoopbackServer

pytestmark = pytest.mark.timeout(90)

PLUGIN = Path(__file__).parent / "fixtures" / "gateway_plugin.py"


async def test_the_audit_log_and_the_counters(tmp_path: Path, http_server: LoopbackServer) -> None:
    (tmp_path / "rosey.toml").write_text(
        f"""
[rosey]
plugin_dirs = []
entry_points = false

[plugins.gw]
path = "{PLUGIN}"

[plugins.gw.http]
allow = [{{ url = "{http_server.url("/ok/")}", allow_private = true }}]
"""
    )
    running = await start_run(tmp_path)
    try:
        for path in ("/ok/echo?token=hidden", "/nope/echo"):
            code, out, err = await rosey("send", "gw", "get", http_server.url(path), "--json", cwd=tmp_path)
            assert code == 0, err
        status = await running.status()
        assert status["gateway"]["gw"]["completed"] == 1 and status["gateway"]["gw"]["refused"] == 1
        code, out, err = await rosey("logs", "--gateway", cwd=tmp_path)
        assert code == 0, err
        ok, refused = out.splitlines()
        assert f"gw GET 127.0.0.1:{http_server.port}/ok/echo -> 200" in ok
        assert "/nope/echo -> refused by path" in refused
        assert "hidden" not in out  # never the query
    finally:
        running.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(running.proc.wait(), 20) == 0
    # After the stop: read from the state directory, of one plugin, the last N.
    code, out, err = await rosey("logs", "--gateway", "gw", "-n", "1", cwd=tmp_path)
    assert code == 0 and out.count("\n") == 1 and "refused by path" in out, (out, err)
    code, out, err = await rosey("logs", "--gateway", "other", cwd=tmp_path)
    assert code == 0 and out == "" and "no gateway requests of plugin 'other'" in err
    code, _, err = await rosey("logs", cwd=tmp_path)
    assert code == 2 and "rosey logs --gateway" in err
    lines = (tmp_path / ".rosey" / "gateway" / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["refused_by"] for line in lines] == [None, "path"]
