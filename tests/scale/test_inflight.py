"""issue 16 (s-inflight): commands NATS handed a replica that never read them get the crash reply at once.

A replica is stopped (SIGSTOP: the OS pauses it, NATS keeps handing it commands, which wait unread in
its socket), 30 commands are sent, then it is killed (SIGKILL). Its ledger is empty (plugin code read
none of them), so before the barrier those commands met the command timeout (60 s here). Now every
command ends well within DECIDED: those on the dead replica with the crash reply (or, for an
idempotent plugin, answered by a live replica after one re-send), all others with their result.
Deterministic: no sleeps; the test waits on the server having routed every command (a flush) and on
the outcomes.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from bot.rosey.core.events import Event
from bot.rosey.services.router import CommandOutcome, OutcomeKind
from bot.rosey.supervision.lifecycle import LifecycleEvent
from bot.rosey.supervision.status import PluginState
from tests.security.conftest import Rosey, StartRosey

FIXTURES = Path(__file__).parent / "fixtures"
WORKER = FIXTURES / "worker_plugin.py"
IDEMPOTENT = FIXTURES / "idempotent_plugin.py"
SPY = FIXTURES / "barrier_spy_plugin.py"

COMMANDS = 30
TIMEOUT = 60.0  # the command timeout: without the barrier, the unread commands end here
DECIDED = 20.0  # every outcome must be in by then (the test fails rather than wait for TIMEOUT)

pytestmark = pytest.mark.timeout(120)


async def _stop_send_kill(
    rosey: Rosey, replicas: int
) -> tuple[list[CommandOutcome], LifecycleEvent, int, set[int]]:
    """SIGSTOP the last replica, send COMMANDS, SIGKILL it; every outcome, the crash, its pid, the others'."""
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    keys = ["worker", *(f"worker#{n}" for n in range(2, replicas + 1))]
    pids = []
    for key in keys:
        process = supervisor.plugins[key].process
        assert process is not None and process.pid is not None
        pids.append(process.pid)
    victim, survivors = pids[-1], set(pids[:-1])
    crashes: list[LifecycleEvent] = []
    crashed = asyncio.Event()

    async def on_crash(event: Event) -> None:
        crashes.append(LifecycleEvent.from_dict(event.data, state=PluginState.CRASHED))
        crashed.set()

    await rosey.core.subscribe("rosey.lifecycle.worker.crashed", on_crash)
    await rosey.core.flush()
    os.kill(victim, signal.SIGSTOP)
    tasks = [asyncio.create_task(rosey.command("worker", "pid", timeout=TIMEOUT)) for _ in range(COMMANDS)]
    await asyncio.sleep(0)  # a yield, not a wait: each task writes its command to the connection
    await rosey.router.bus.flush()  # the server has routed all of them (some to the stopped replica)
    os.kill(victim, signal.SIGKILL)
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks), DECIDED)
    await asyncio.wait_for(crashed.wait(), DECIDED)
    (crash,) = crashes
    assert crash.pid == victim and crash.replica == replicas and crash.in_flight is not None
    return list(outcomes), crash, victim, survivors


@pytest.mark.asyncio
@pytest.mark.parametrize("replicas", [2, 3])
async def test_unread_commands_of_a_killed_replica_get_the_crash_reply_at_once(
    start_rosey: StartRosey, launcher: str, replicas: int
) -> None:
    rosey = await start_rosey({"worker": {"path": str(WORKER), "replicas": replicas}}, launcher=launcher)
    outcomes, crash, victim, survivors = await _stop_send_kill(rosey, replicas)
    kinds = {o.kind for o in outcomes}
    assert kinds <= {OutcomeKind.RESULT, OutcomeKind.CRASHED}, [o for o in outcomes if not o.ok][:3]
    crashed = [o for o in outcomes if o.kind is OutcomeKind.CRASHED]
    results = [o for o in outcomes if o.ok]
    # NATS handed some to the stopped replica (30 commands, each to it with 1/replicas), and plugin
    # code read none of those the ledger does not name: the barrier found them.
    assert len(crashed) > len(crash.in_flight), (len(crashed), crash.in_flight)
    assert all("crashed while handling your command (killed by SIGKILL)" in o.message for o in crashed)
    assert {o.data["pid"] for o in results} <= survivors
    assert len(crashed) + len(results) == COMMANDS
    # Commands sent after the death are not affected: the live replicas (and the restarted one) answer.
    after = await asyncio.wait_for(
        asyncio.gather(*(rosey.command("worker", "pid", timeout=TIMEOUT) for _ in range(COMMANDS))), DECIDED
    )
    assert all(o.ok for o in after), [o for o in after if not o.ok][:3]
    assert victim not in {o.data["pid"] for o in after}


@pytest.mark.asyncio
async def test_unread_commands_of_an_idempotent_plugin_are_answered_by_a_live_replica(
    start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start_rosey({"worker": {"path": str(IDEMPOTENT), "replicas": 2}}, launcher=launcher)
    outcomes, crash, victim, _survivors = await _stop_send_kill(rosey, 2)
    assert crash.idempotent
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
    assert victim not in {o.data["pid"] for o in outcomes}
    assert len(outcomes) == COMMANDS


@pytest.mark.asyncio
async def test_another_plugin_cannot_answer_a_replicas_barrier(
    start_rosey: StartRosey, launcher: str
) -> None:
    """Hostile: ``spy`` tries to subscribe to the worker's barrier subjects and claim every command,
    which would leave the worker's lost commands to the timeout. NATS refuses its subscription."""
    rosey = await start_rosey(
        {"worker": {"path": str(WORKER), "replicas": 2}, "spy": {"path": str(SPY)}}, launcher=launcher
    )
    outcomes, crash, _victim, _survivors = await _stop_send_kill(rosey, 2)
    crashed = [o for o in outcomes if o.kind is OutcomeKind.CRASHED]
    assert len(crashed) > len(crash.in_flight), (len(crashed), crash.in_flight)
    assert all(o.kind in (OutcomeKind.RESULT, OutcomeKind.CRASHED) for o in outcomes)
    row = rosey.row("spy")
    assert row["permission_violations"] >= 1, row  # the server's word, seen on its connection
