"""`rosey top` and the dashboard show a remote plugin's row with its host (s-spread, issue 16)."""

from __future__ import annotations

import pytest

from bot.rosey.supervision.status import PluginState, PluginStatus
from bot.rosey.web.dashboard import NO_RATES, _row
from tests.cli.conftest import rosey
from tests.hosts.conftest import Cluster

pytestmark = pytest.mark.timeout(120)


async def test_rosey_top_once_on_the_hub_shows_the_host_of_each_row(cluster: Cluster) -> None:
    await cluster.wait_host_label("far_echo", "b")
    code, out, err = await rosey("top", "--once", cwd=cluster.hub.workdir)
    assert code == 0, err
    lines = [line.split() for line in out.splitlines() if line.strip()]
    header = next(line for line in lines if line and line[0].startswith("NAME"))
    assert header[header.index("HOST") - 1].startswith(("NAME", "▲"))  # HOST right after NAME
    rows = {line[0]: line for line in lines}
    assert rows["far_echo"][1] == "b" and rows["echo"][1] == "hub"


def test_the_dashboards_row_of_a_remote_plugin_names_its_host() -> None:
    remote = PluginStatus(name="far", state=PluginState.RUNNING, host="b (lost)")
    local = PluginStatus(name="near", state=PluginState.RUNNING)
    assert _row(remote, NO_RATES, "machine")["host"] == "b (lost)"
    assert _row(local, NO_RATES, "machine")["host"] == "machine"
