"""What ``rosey status`` says about a plugin's sandbox comes from the launcher, not from the plugin.

The launcher applies the sandbox, then writes the layers in force as the first line of the
readiness pipe, and only then runs plugin code. A plugin can write that pipe too (the SDK's READY
goes there) and can answer liveness pings with anything; neither reaches the status. The layers
are checked against the kernel's own view of the process (``/proc/PID/status``), outside the plugin.

The launcher running first is itself an attack surface: the plugin's data dir is its working
directory and ``$HOME``, so a module or ``.pth`` file planted there must never run before the
sandbox when the plugin is started again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bot.rosey.core.subjects import Subjects
from bot.rosey.supervision.status import PluginState, RoseyStatus
from tests.security.conftest import FIXTURES, Rosey, StartRosey

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(60)]

FORGER = FIXTURES / "forger_plugin.py"
FORGED_LAYER = "forged-by-plugin"
ALL_LAYERS = {
    "mount-ns",  # the private file-system view (root, or user namespaces: both here)
    "rlimits",
    "capabilities",
    "no_new_privs",
    "landlock-fs",
    "landlock-net",
    "landlock-scope",
    "seccomp",
}


def kernel_view(pid: int) -> dict[str, str]:
    """The protections the kernel reports for ``pid``: seccomp mode, no_new_privs, capabilities."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Seccomp", "NoNewPrivs", "CapEff", "CapPrm", "CapBnd"):
            fields[key] = value.strip()
    return fields


async def cli_status(rosey: Rosey) -> RoseyStatus:
    """What `rosey status --json` prints: the control service's answer, over NATS."""
    reply = await rosey.core.request(Subjects.supervisor("status"), {}, "security-test", timeout=5)
    return RoseyStatus.from_dict(json.loads(json.dumps(reply.data)))


async def test_status_shows_the_sandbox_the_launcher_reported_not_the_plugins_claim(
    start_rosey: StartRosey, launcher: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORGE_READY_PIPE", "1")  # granted below: the forger writes fake launch lines
    forger = {"path": str(FORGER), "env": ["FORGE_READY_PIPE"]}
    rosey = await start_rosey({"forger": forger, "canary": {}}, launcher=launcher)
    traffic = rosey.traffic()

    # The plugin's claim, as it answers the supervisor's liveness ping: forged.
    pong = await rosey.core.request(Subjects.control("forger", "ping"), {}, "security-test", timeout=5)
    assert FORGED_LAYER in pong.data["sandbox"].split(","), pong.data
    # It keeps writing launcher-looking lines on its readiness fd after READY, too.
    assert (await rosey.attempt("forger", "write_ready_fd"))["outcome"] in ("allowed", "error")

    status = await cli_status(rosey)
    for name in ("forger", "canary"):
        row = status.plugin(name)
        assert row is not None and row.state is PluginState.RUNNING and row.pid is not None
        assert row.sandbox_source == "launcher", row
        assert row.sandbox is not None and set(row.sandbox.split(",")) == ALL_LAYERS, row
        assert row.launcher == launcher
        # The kernel agrees with the launcher: filter mode seccomp, no_new_privs, no capabilities.
        kernel = kernel_view(row.pid)
        assert kernel["Seccomp"] == "2" and kernel["NoNewPrivs"] == "1", kernel
        assert int(kernel["CapEff"], 16) == int(kernel["CapBnd"], 16) == 0, kernel
    assert FORGED_LAYER not in json.dumps(status.to_dict())
    assert rosey.app.supervisor is not None and rosey.app.supervisor.get("forger").restarts == 0
    await traffic.assert_all_answered()
    assert rosey.row("canary")["restarts"] == 0


async def test_code_planted_in_the_data_dir_never_runs_before_the_sandbox(
    start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start_rosey({"forger": {"path": str(FORGER)}, "canary": {}}, launcher=launcher)
    traffic = rosey.traffic()
    marker = rosey.workdir / "planted-code-ran"
    payload = f"open({str(marker)!r}, 'w').write('ran before the sandbox')\n"
    data = rosey.state_dir / "data" / "forger"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    plants: dict[Path, str] = {
        # The working directory: `python -m` would put it first on sys.path.
        data / "argparse.py": payload,
        data / "bot" / "__init__.py": payload,
        data / "sitecustomize.py": payload,
        # $HOME's user site-packages: a .pth line starting with "import" is executed at start-up.
        data / ".local" / "lib" / version / "site-packages" / "planted.pth": "import os; " + payload,
        data / ".local" / "lib" / version / "site-packages" / "usercustomize.py": payload,
    }
    for path, text in plants.items():
        result = await rosey.attempt("forger", "plant", str(path), text)
        assert result["outcome"] == "allowed", result  # the plugin may write its own data dir

    supervisor = rosey.app.supervisor
    assert supervisor is not None
    process = supervisor.get("forger").process
    assert process is not None and process.pid is not None
    first_pid = process.pid
    supervisor.kill("forger", "test: start it again over its planted files")
    await supervisor.wait_for_state(
        "forger",
        lambda p: p.state is PluginState.RUNNING and p.process is not None and p.process.pid != first_pid,
        timeout=20,
    )
    assert (await rosey.attempt("forger", "ping"))["value"] == "pong"
    assert not marker.exists(), marker.read_text()
    await traffic.assert_all_answered()
    assert rosey.row("canary")["restarts"] == 0
