"""issue 16, hostile: a replica that forges its command ledger cannot fail another plugin's commands,
nor make the host hold more than a bounded set, and its lies cost only its own commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.rosey.core.events import Event
from bot.rosey.plugins.ledger import MAX_OPEN
from bot.rosey.plugins.process.output import OutputLine
from bot.rosey.services.router import OutcomeKind
from bot.rosey.supervision.lifecycle import LifecycleEvent
from bot.rosey.supervision.status import PluginState
from tests.security.conftest import StartRosey

FIXTURES = Path(__file__).parent / "fixtures"

pytestmark = pytest.mark.timeout(60)


@pytest.mark.asyncio
async def test_a_replica_forging_its_ledger_fails_no_other_plugins_command(
    start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start_rosey(
        {
            "worker": {"path": str(FIXTURES / "worker_plugin.py")},
            "liar": {"path": str(FIXTURES / "liar_plugin.py"), "replicas": 2},
        },
        launcher=launcher,
    )
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    taken: asyncio.Queue[str] = asyncio.Queue()

    def on_output(name: str, line: OutputLine) -> None:
        if name == "worker" and line.text.startswith("took "):
            taken.put_nowait(line.text.split()[1])

    supervisor.add_output_listener(on_output)
    crashes: list[LifecycleEvent] = []
    crashed = asyncio.Event()

    async def on_crash(event: Event) -> None:
        crashes.append(LifecycleEvent.from_dict(event.data, state=PluginState.CRASHED))
        crashed.set()

    await rosey.core.subscribe("rosey.lifecycle.*.crashed", on_crash)
    await rosey.core.flush()

    victim = asyncio.create_task(rosey.command("worker", "work", "1500"))
    cid = await asyncio.wait_for(taken.get(), 10)  # the worker holds it now
    liar = await rosey.command("liar", "forge", cid, timeout=3)
    # Its own command: the crash reply, or (its 20,000 lies pushed it out of the bounded set) the
    # timeout: lying costs the liar its own answers, nobody else's.
    assert liar.kind in (OutcomeKind.CRASHED, OutcomeKind.TIMEOUT), liar
    await asyncio.wait_for(crashed.wait(), 10)
    outcome = await victim
    assert outcome.kind is OutcomeKind.RESULT and outcome.correlation_id == cid, outcome
    (crash,) = crashes
    assert crash.plugin == "liar" and crash.in_flight is not None
    assert cid in crash.in_flight and len(crash.in_flight) <= MAX_OPEN  # bounded, whatever it wrote
    assert (await rosey.command("worker", "pid")).ok
    await supervisor.wait_for_state(
        "liar#2" if crash.replica == 2 else "liar", lambda p: p.state is PluginState.RUNNING, timeout=30
    )
