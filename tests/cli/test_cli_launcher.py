"""`ROSEY_LAUNCHER` in the environment of `rosey run` overrides `[rosey] launcher`, as documented,
and `rosey status` reports the launcher that really made each plugin process."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.cli.conftest import rosey, start_run

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(60)]


@pytest.mark.parametrize(("configured", "override"), [("zygote", "spawn"), ("spawn", "zygote")])
async def test_rosey_launcher_in_the_environment_overrides_the_configured_one(
    tmp_path: Path, configured: str, override: str
) -> None:
    (tmp_path / "rosey.toml").write_text(f'[rosey]\nlauncher = "{configured}"\n')
    running = await start_run(tmp_path, env={"ROSEY_LAUNCHER": override})
    try:
        status = await running.status()
        (row,) = status["plugins"]
        assert status["launcher"]["kind"] == override
        assert row["launcher"] == override
        # What really made the process, seen from outside it: its parent.
        parent = psutil.Process(row["pid"]).ppid()
        if override == "spawn":
            assert status["launcher"]["zygote_pid"] is None
            assert parent == running.proc.pid
        else:
            assert parent == status["launcher"]["zygote_pid"] != running.proc.pid
        code, out, err = await rosey("status", cwd=tmp_path)
        assert code == 0, err
        header, echo = out.splitlines()[:2]
        assert header.split()[:5] == ["NAME", "KIND", "STATE", "PID", "LAUNCHER"]
        assert echo.split()[:3] == ["echo", "plugin", "running"] and echo.split()[4] == override
        sandbox = [line for line in out.splitlines() if line.startswith("sandbox ")]
        assert len(sandbox) == 1, out
        layers, _, rest = sandbox[0].removeprefix("sandbox ").partition(": ")
        assert rest == "echo (reported by the launcher before plugin code ran)", sandbox
        assert {"rlimits", "capabilities", "no_new_privs", "landlock-fs", "seccomp"} <= set(layers.split(","))
    finally:
        if running.proc.returncode is None:
            running.proc.kill()
            await running.proc.wait()


async def test_an_unknown_rosey_launcher_stops_rosey_run_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROSEY_LAUNCHER", "exec")  # the user's shell, which `rosey` inherits
    code, _, err = await rosey("run", "--no-chat", cwd=tmp_path)
    assert code == 2
    assert "ROSEY_LAUNCHER (environment): must be one of 'zygote', 'spawn', got 'exec'" in err
