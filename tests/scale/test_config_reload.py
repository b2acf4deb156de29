"""issue 16: ``rosey reload`` (no NAME) applies a changed rosey.toml to the running bot: a new plugin
is started (the embedded NATS server learns its user without a restart), a removed one stopped, a
changed one gets its settings at its next start; a bad file changes nothing and says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.rosey.core.subjects import Subjects
from bot.rosey.services.router import OutcomeKind
from tests.security.conftest import CANARY, StartRosey, toml_table

WORKER = Path(__file__).parent / "fixtures" / "worker_plugin.py"

pytestmark = pytest.mark.timeout(90)


async def _reload(rosey: Any) -> dict[str, Any]:
    reply = await rosey.core.request(Subjects.supervisor("reload"), {}, "test", timeout=60)
    return dict(reply.data)


def _rewrite(config_file: Path, drop: str | None = None, add: str = "") -> None:
    text = config_file.read_text()
    if drop is not None:
        start = text.index(f"[plugins.{drop}]")
        end = text.find("\n[", start + 1)
        text = text[:start] + (text[end + 1 :] if end >= 0 else "")
    config_file.write_text(text + add)


@pytest.mark.asyncio
async def test_config_reload_starts_new_stops_removed_and_keeps_all_on_a_bad_file(
    start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start_rosey({"canary": {}}, launcher=launcher)
    config_file = rosey.workdir / "rosey.toml"
    assert (await rosey.command("worker", "pid")).kind is OutcomeKind.UNKNOWN

    # A bad file: nothing changes, and the reply says why (file and key).
    good = config_file.read_text()
    config_file.write_text(
        good + toml_table("plugins.worker", {"path": str(WORKER), "max_memory_mb": "lots"})
    )
    reply = await _reload(rosey)
    assert reply["ok"] is False and "nothing changed" in reply["error"] and "max_memory_mb" in reply["error"]
    assert (await rosey.command("canary", "hi")).ok
    assert (await rosey.command("worker", "pid")).kind is OutcomeKind.UNKNOWN

    # A new plugin restricted to a channel: the router reads access rules at start only, so the
    # reload is refused rather than leave it open to every channel.
    config_file.write_text(good + toml_table("plugins.worker", {"path": str(WORKER), "channels": ["#staff"]}))
    reply = await _reload(rosey)
    assert (
        reply["ok"] is False and "worker.channels" in reply["error"] and "nothing changed" in reply["error"]
    )
    assert (await rosey.command("worker", "pid")).kind is OutcomeKind.UNKNOWN

    # A new plugin: started, with its own NATS user, and answering.
    config_file.write_text(good + toml_table("plugins.worker", {"path": str(WORKER), "replicas": 2}))
    reply = await _reload(rosey)
    assert reply["ok"] is True, reply
    assert reply["config"]["started"] == ["worker"] and not reply["config"]["failed"], reply
    outcome = await rosey.command("worker", "pid")
    assert outcome.ok, outcome
    assert rosey.row("worker")["state"] == "running" and rosey.row("worker#2")["state"] == "running"
    assert (await rosey.command("canary", "still")).ok  # the neighbour kept its connection

    # A changed limit: reported, applied at the next start (a restart), not before.
    _rewrite(
        config_file,
        drop="worker",
        add=toml_table("plugins.worker", {"path": str(WORKER), "replicas": 2, "max_memory_mb": 300}),
    )
    reply = await _reload(rosey)
    assert reply["config"]["changed"] == ["worker"], reply
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    assert all(m.spec.limits.max_memory_mb == 300 for m in supervisor.members("worker"))

    # A removed plugin: stopped and gone from status; its commands are unknown again.
    _rewrite(config_file, drop="canary")
    canary_pid = rosey.row("canary")["pid"]
    reply = await _reload(rosey)
    assert reply["config"]["stopped"] == ["canary"], reply
    assert rosey.app.status().plugin("canary") is None
    assert (await rosey.command("canary", "x")).kind in (OutcomeKind.UNKNOWN, OutcomeKind.UNAVAILABLE)
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(canary_pid, 0)
    assert (await rosey.command("worker", "pid")).ok

    # Nothing changed: said so.
    reply = await _reload(rosey)
    assert reply["ok"] and not any(reply["config"][k] for k in ("started", "stopped", "changed", "restarted"))
    assert CANARY  # the fixture the first table used
