"""issue 16: ``rosey reload NAME`` under load, through the real supervisor and NATS.

The new version starts beside the old one, gets ready, takes the commands; the old one drains and
stops: under ~200 commands/s no command fails or is lost. A new version that cannot start leaves
the old one serving and says why.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import PluginReloadError
from bot.rosey.services.router import OutcomeKind
from tests.scale.load import Load
from tests.security.conftest import StartRosey

WORKER = Path(__file__).parent / "fixtures" / "worker_plugin.py"

pytestmark = pytest.mark.timeout(90)


def _version(path: Path, version: int, *, broken: bool = False) -> None:
    text = WORKER.read_text().replace("VERSION = 1", f"VERSION = {version}")
    path.write_text(text.replace("BROKEN = False", f"BROKEN = {broken}"))


@pytest.mark.asyncio
@pytest.mark.parametrize("replicas", [1, 2])
async def test_reload_under_load_drops_nothing(
    start_rosey: StartRosey, launcher: str, tmp_path: Path, replicas: int
) -> None:
    plugin = tmp_path / "worker.py"
    shutil.copy(WORKER, plugin)
    rosey = await start_rosey({"worker": {"path": str(plugin), "replicas": replicas}}, launcher=launcher)
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    old_pids = {m.process.pid for m in supervisor.members("worker") if m.process is not None}
    load = Load(rosey.router, "worker", ["work", "20"], rate=200, timeout=10.0).start()
    await load.until(lambda lo: len(lo.outcomes) >= 50)
    _version(plugin, 2)
    await supervisor.reload("worker")
    new_pids = {m.process.pid for m in supervisor.members("worker") if m.process is not None}
    assert len(new_pids) == replicas and not new_pids & old_pids
    await load.until(lambda lo: sum(o.data.get("version") == 2 for o in lo.outcomes) >= 50)
    outcomes = await load.stop()
    failed = [o for o in outcomes if o.kind is not OutcomeKind.RESULT]
    assert not failed, failed[:3]
    assert len(outcomes) >= 100
    versions = [o.data["version"] for o in outcomes]
    assert 1 in versions and 2 in versions
    assert {o.data["pid"] for o in outcomes} <= old_pids | new_pids
    for member in supervisor.members("worker"):
        assert member.restarts == 0 and member.state.value == "running"


@pytest.mark.asyncio
async def test_reload_to_a_broken_version_keeps_the_old_one_serving(
    start_rosey: StartRosey, launcher: str, tmp_path: Path
) -> None:
    plugin = tmp_path / "worker.py"
    shutil.copy(WORKER, plugin)
    rosey = await start_rosey({"worker": {"path": str(plugin)}}, launcher=launcher)
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    old = supervisor.plugins["worker"].process
    assert old is not None
    old_pid = old.pid
    load = Load(rosey.router, "worker", ["work", "20"], rate=200, timeout=10.0).start()
    await load.until(lambda lo: len(lo.outcomes) >= 50)
    _version(plugin, 2, broken=True)
    with pytest.raises(PluginReloadError, match=r"broken on purpose.*keeps serving"):
        await supervisor.reload("worker")
    # The operator's way: the control service answers with the same one-line error.
    reply = await rosey.core.request(Subjects.supervisor("reload"), {"name": "worker"}, "test", timeout=30)
    assert reply.data["ok"] is False and "keeps serving" in reply.data["error"], reply.data
    await load.until(lambda lo: len(lo.outcomes) >= 150)
    outcomes = await load.stop()
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
    assert {o.data["pid"] for o in outcomes} == {old_pid}
    assert {o.data["version"] for o in outcomes} == {1}
    row = rosey.row("worker")
    assert row["pid"] == old_pid and row["state"] == "running" and row["restarts"] == 0
