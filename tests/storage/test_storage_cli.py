"""Storage as an operator lives with it: the real `rosey run`, restarts, a SIGKILL, `rosey storage`."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import RunningRosey, rosey, start_run
from tests.storage.conftest import STORAGE_PLUGIN

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(120)]


def _project(workdir: Path) -> None:
    (workdir / "rosey.toml").write_text(
        f"""
[rosey]
state_dir = ".rosey"
entry_points = false
plugin_dirs = []

[plugins.store]
path = {json.dumps(str(STORAGE_PLUGIN))}

[plugins.store.storage]
max_keys = 20
max_value_bytes = 1000
"""
    )


async def _send(workdir: Path, *args: str) -> Any:
    code, out, err = await rosey("send", "store", *args, "--json", cwd=workdir)
    assert code == 0, (args, out, err)
    data = json.loads(out)["data"]
    assert "error_type" not in data, data
    return data.get("value")


async def _stop(bot: RunningRosey, sig: signal.Signals) -> None:
    bot.proc.send_signal(sig)
    await asyncio.wait_for(bot.proc.wait(), 30)


async def test_data_survives_plugin_restart_rosey_restart_and_sigkill(tmp_path: Path) -> None:
    _project(tmp_path)
    bot = await start_run(tmp_path)
    try:
        await _send(tmp_path, "put", "a", '{"n": 1}')
        await _send(tmp_path, "put", "b", "[1, 2]")
        code, _, err = await rosey("restart", "store", cwd=tmp_path)
        assert code == 0, err
        assert await _send(tmp_path, "get", "a") == {"n": 1}  # 1. a plugin restart
        await _stop(bot, signal.SIGTERM)

        bot = await start_run(tmp_path)
        assert await _send(tmp_path, "get", "b") == [1, 2]  # 2. a `rosey run` restart
        await _send(tmp_path, "put", "c", '"written just before the kill"')
        await _stop(bot, signal.SIGKILL)

        bot = await start_run(tmp_path)  # 3. after a SIGKILL of `rosey run` (its nats-server dies with it)
        assert await _send(tmp_path, "get", "c") == "written just before the kill"
        assert await _send(tmp_path, "keys") == ["a", "b", "c"]
    finally:
        if bot.proc.returncode is None:
            await _stop(bot, signal.SIGTERM)


async def test_the_operator_command_and_status(tmp_path: Path) -> None:
    _project(tmp_path)
    bot = await start_run(tmp_path)
    try:
        await _send(tmp_path, "put", "quote.1", '{"text": "hi", "by": "ann"}')
        await _send(tmp_path, "put", "quote.2", '"two"')

        code, out, err = await rosey("storage", "store", "list", cwd=tmp_path)
        assert code == 0 and out.split() == ["quote.1", "quote.2"], err
        assert "2/20 keys" in err
        code, out, _ = await rosey("storage", "store", "get", "quote.1", cwd=tmp_path)
        assert code == 0 and json.loads(out) == {"text": "hi", "by": "ann"}
        code, out, err = await rosey("storage", "store", "get", "nope", cwd=tmp_path)
        assert code == 1 and "has no key 'nope'" in err

        code, out, _ = await rosey("storage", "store", "export", cwd=tmp_path)
        exported = json.loads(out)
        assert exported == {"quote.1": {"text": "hi", "by": "ann"}, "quote.2": "two"}
        code, _, _ = await rosey("storage", "store", "delete", "quote.2", cwd=tmp_path)
        assert code == 0
        backup = tmp_path / "backup.json"
        backup.write_text(json.dumps({**exported, "score:ann": 7}))
        code, _, err = await rosey("storage", "store", "import", str(backup), cwd=tmp_path)
        assert code == 0 and "imported 3 keys" in err
        assert await _send(tmp_path, "get", "score:ann") == 7  # the plugin sees what was imported

        # Quotas hold for the operator too, and a refused import leaves the data as it was.
        (tmp_path / "big.json").write_text(json.dumps({f"k{i}": i for i in range(30)}))
        code, _, err = await rosey("storage", "store", "import", str(tmp_path / "big.json"), cwd=tmp_path)
        assert code == 2 and "max_keys" in err and "17 keys of this import were written before it" in err, err
        assert await _send(tmp_path, "get", "quote.1") == {"text": "hi", "by": "ann"}
        code, _, err = await rosey("storage", "nobody", "list", cwd=tmp_path)
        assert code == 2 and "no plugin named 'nobody'" in err

        code, out, _ = await rosey("storage", "store", "list", "--json", cwd=tmp_path)
        listed = json.loads(out)
        status = await bot.status()
        usage = status["storage"]["store"]
        assert usage["keys"] == listed["usage"]["keys"] == 20  # 3 + 17 imported before the quota
        assert usage["max_keys"] == 20 and usage["max_value_bytes"] == 1000 and 0 < usage["bytes"]
    finally:
        await _stop(bot, signal.SIGTERM)
