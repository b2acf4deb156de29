"""One test per fault. Each asserts that (a) a healthy plugin answers throughout with zero
errors, (b) every command sent to the faulty plugin gets a result or an error, never
silence, and (c) the faulty plugin comes back, or is ``failed`` with its reason."""

from __future__ import annotations

import pytest

from bot.rosey.services.router import OutcomeKind
from bot.rosey.supervision.spec import RestartPolicy
from bot.rosey.supervision.status import PluginState

from .conftest import FAULTY, SWEEP_ONLY, echo, faulty

pytestmark = pytest.mark.timeout(60)


async def test_handler_exception_is_an_error_reply_and_the_plugin_keeps_serving(stack_factory) -> None:
    stack = await stack_factory(echo(), faulty())
    traffic = stack.traffic()
    outcome = await stack.command("faulty", "raise")
    assert outcome.kind is OutcomeKind.ERROR and "fault injected" in outcome.message
    assert (await stack.command("faulty", "ok")).ok
    await traffic.assert_all_answered()
    assert stack.supervisor.get("faulty").restarts == 0


@pytest.mark.parametrize(("fault", "last_exit"), [("exit", "exit code 3"), ("segv", "killed by SIGSEGV")])
async def test_crash_fails_the_waiting_command_fast_and_restarts(
    stack_factory, fault: str, last_exit: str
) -> None:
    stack = await stack_factory(echo(), faulty())
    traffic = stack.traffic()
    outcome = await stack.command("faulty", fault, timeout=30.0)
    assert outcome.kind is OutcomeKind.CRASHED, outcome
    assert outcome.elapsed < 5.0  # told by the crash event, not by the 30 s timeout
    plugin = await stack.back_up("faulty")
    assert plugin.last_exit == last_exit
    assert (await stack.command("faulty", "ok")).ok
    await traffic.assert_all_answered()


async def test_blocked_event_loop_is_killed_and_restarted(stack_factory) -> None:
    stack = await stack_factory(echo(), faulty())
    traffic = stack.traffic()
    outcome = await stack.command("faulty", "block", timeout=30.0)
    assert outcome.kind is OutcomeKind.CRASHED, outcome
    plugin = await stack.back_up("faulty")
    assert plugin.last_exit is not None and plugin.last_exit.startswith("unresponsive"), plugin.last_exit
    assert (await stack.command("faulty", "ok")).ok
    await traffic.assert_all_answered()


async def test_memory_over_the_limit_is_killed_with_the_reason(stack_factory) -> None:
    stack = await stack_factory(echo(), faulty(max_memory_mb=150), watchdog=SWEEP_ONLY)
    traffic = stack.traffic()
    outcome = await stack.command("faulty", "alloc", timeout=30.0)
    assert outcome.kind is OutcomeKind.CRASHED, outcome
    plugin = await stack.back_up("faulty")
    assert plugin.last_exit is not None and plugin.last_exit.startswith("memory "), plugin.last_exit
    assert "> limit 150 MB" in plugin.last_exit
    await traffic.assert_all_answered()


async def test_cpu_spin_over_the_limit_is_killed_with_the_reason(stack_factory) -> None:
    stack = await stack_factory(
        echo(), faulty(max_cpu_percent=20.0, cpu_window_seconds=1.0), watchdog=SWEEP_ONLY
    )
    traffic = stack.traffic()
    assert (await stack.command("faulty", "spin")).ok
    plugin = await stack.back_up("faulty")
    assert plugin.last_exit is not None and plugin.last_exit.startswith("cpu "), plugin.last_exit
    await traffic.assert_all_answered()


async def test_fork_storm_beyond_max_processes_kills_the_whole_tree(stack_factory) -> None:
    stack = await stack_factory(echo(), faulty(max_processes=5), watchdog=SWEEP_ONLY)
    traffic = stack.traffic()
    first_pid = stack.supervisor.get("faulty").process.pid
    outcome = await stack.command("faulty", "fork", "50")
    # Either the fork storm finished before the sweep (a result), or it was killed mid-way.
    assert outcome.kind in (OutcomeKind.RESULT, OutcomeKind.CRASHED), outcome
    plugin = await stack.back_up("faulty")
    assert plugin.process.pid != first_pid
    assert plugin.last_exit is not None and plugin.last_exit.startswith("child processes"), plugin.last_exit
    await traffic.assert_all_answered()


async def test_stdout_flood_does_not_stall_anyone(stack_factory) -> None:
    stack = await stack_factory(echo(), faulty())
    traffic = stack.traffic()
    flood = await stack.command("faulty", "flood", "50", timeout=60.0)
    assert flood.ok, flood
    assert (await stack.command("faulty", "ok")).ok
    process = stack.supervisor.get("faulty").process
    assert process.output.total_bytes >= 50 * 1_000_000
    assert len(process.output.lines) <= process.output.max_lines
    await traffic.assert_all_answered()
    assert stack.supervisor.get("faulty").restarts == 0


async def test_crash_loop_ends_in_failed_with_the_reason(stack_factory) -> None:
    stack = await stack_factory(echo(), faulty(), env={"faulty": {"FAULT_ON_START": "exit_after_ready"}})
    plugin = await stack.supervisor.wait_for_state("faulty", lambda p: p.state is PluginState.FAILED, 20)
    await stack.supervisor.events.flush(5.0)  # the last crash event is out: it cannot fail what follows
    assert plugin.failure_reason is not None and "3 times in a row" in plugin.failure_reason
    assert "exit code 4" in plugin.failure_reason
    outcome = await stack.command("faulty", "ok", timeout=5.0)
    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert (await stack.command("echo", "still", "here")).ok


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        # An exception before the plugin was ever ready: failed at once, never retried.
        ("raise", "failed to start: RuntimeError: fault injected: on_start raised ("),
        # An exit without a traceback may be chance once; the same twice in a row is not.
        ("exit", "failed to start, twice the same way: exited before it was ready (exit code 4)"),
    ],
)
async def test_a_start_failure_that_will_repeat_fails_without_the_crash_loop(
    stack_factory, fault: str, reason: str
) -> None:
    stack = await stack_factory(echo(), faulty(), env={"faulty": {"FAULT_ON_START": fault}})
    plugin = await stack.supervisor.wait_for_state("faulty", lambda p: p.state is PluginState.FAILED, 20)
    assert plugin.failure_reason is not None and plugin.failure_reason.startswith(reason), (
        plugin.failure_reason
    )
    assert plugin.restarts == (0 if fault == "raise" else 1)
    if fault == "raise":  # where it was raised, in the plugin's own file
        assert "faulty_plugin.py:" in plugin.failure_reason
    outcome = await stack.command("faulty", "ok", timeout=5.0)
    assert outcome.kind is OutcomeKind.UNAVAILABLE and plugin.failure_reason in outcome.message
    assert (await stack.command("echo", "still", "here")).ok


async def test_clean_exit_is_not_a_crash(stack_factory) -> None:
    stack = await stack_factory(echo(), faulty())
    assert (await stack.command("faulty", "quit")).ok
    plugin = await stack.supervisor.wait_for_state("faulty", lambda p: p.state is PluginState.STOPPED, 10)
    assert plugin.restarts == 0 and plugin.last_exit == "exited cleanly"


async def test_restart_always_restarts_after_a_clean_exit(stack_factory) -> None:
    from bot.rosey.supervision.spec import PluginSpec

    spec = PluginSpec(name="faulty", path=FAULTY, restart=RestartPolicy.ALWAYS)
    stack = await stack_factory(echo(), spec)
    assert (await stack.command("faulty", "quit")).ok
    await stack.back_up("faulty")
    assert (await stack.command("faulty", "ok")).ok


async def test_stop_start_restart_by_name(stack_factory) -> None:
    stack = await stack_factory(echo(), faulty())
    first = stack.supervisor.get("faulty").process.pid
    await stack.supervisor.restart("faulty")
    plugin = stack.supervisor.get("faulty")
    assert plugin.state is PluginState.RUNNING and plugin.process.pid != first
    await stack.supervisor.stop("faulty")
    assert plugin.state is PluginState.STOPPED and not plugin.process.is_running()
    assert (await stack.command("faulty", "ok", timeout=5.0)).kind is OutcomeKind.UNAVAILABLE
    await stack.supervisor.start("faulty")
    assert (await stack.command("faulty", "ok")).ok
