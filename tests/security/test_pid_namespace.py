"""The ``pid-ns`` layer through the real RoseyApp, both launchers: a plugin allowed to create
processes (``max_processes = 2``) lives in a PID namespace that dies with it.

What the layer must give, each checked from outside the plugin:

* the plugin works like any other: it can start threads (``threading``, asyncio's default
  executor, ``asyncio.to_thread``, ``loop.getaddrinfo``), which a process whose children are
  born in another PID namespace than its own cannot (the kernel refuses CLONE_THREAD there);
* nothing it starts outlives it: SIGKILL of the plugin (its supervised pid or its own process)
  ends every process in its session;
* ``max_processes`` holds: one child too many and the watchdog kills the whole tree;
* it cannot signal a process of the host's;
* stop and kill are reported as for any plugin: a graceful stop exits cleanly, a plugin without
  a SIGTERM handler is killed by SIGTERM (not SIGKILL after the stop timeout), and a plugin
  killed by SIGKILL is reported killed by SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.rosey.plugins.sandbox import seccomp
from bot.rosey.supervision.status import PluginState
from bot.rosey.supervision.supervisor import ManagedPlugin
from tests.processes import kill_quietly, wait_pid_gone
from tests.security.conftest import FIXTURES, Rosey, StartRosey

FORKING = FIXTURES / "forking_plugin.py"

pytestmark = [
    pytest.mark.no_nats,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not seccomp.mode_filter_available()[0], reason="needs seccomp filters"),
    pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root here"),
]


async def start(start_rosey: StartRosey, launcher: str, **forker: int | bool) -> Rosey:
    table: dict[str, str | int | bool] = {"path": str(FORKING), "max_processes": 2, **forker}
    rosey = await start_rosey({"forker": table, "canary": {}}, launcher=launcher)
    assert "pid-ns" in (rosey.row("forker")["sandbox"] or ""), rosey.row("forker")
    return rosey


def supervised_pid(rosey: Rosey, name: str = "forker") -> int:
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    process = supervisor.get(name).process
    assert process is not None and process.pid is not None
    return process.pid


def session_members(session: int) -> set[int]:
    """Every live process of session ``session`` (a plugin's children cannot leave it: setsid is denied)."""
    members = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == session:  # state, ppid, pgrp, session
            members.add(int(entry))
    return members


async def all_gone(pids: set[int]) -> set[int]:
    """Of ``pids``, those still alive 10 s from now (waited for on pidfds)."""
    gone = await asyncio.gather(*(wait_pid_gone(pid, 10.0) for pid in pids))
    return {pid for pid, ok in zip(pids, gone, strict=True) if not ok}


def killed_for(prefix: str) -> Callable[[ManagedPlugin], bool]:
    def killed(plugin: ManagedPlugin) -> bool:
        return plugin.last_exit is not None and plugin.last_exit.startswith(prefix)

    return killed


@pytest.mark.parametrize("how", ["thread", "executor", "to_thread", "getaddrinfo"])
async def test_a_plugin_that_may_fork_can_start_threads(
    start_rosey: StartRosey, launcher: str, how: str
) -> None:
    rosey = await start(start_rosey, launcher)
    traffic = rosey.traffic()
    answer = (await rosey.attempt("forker", how))["answer"]
    expected = "resolved 127.0.0.1" if how == "getaddrinfo" else "ran on thread True"
    assert answer == expected, answer
    await traffic.assert_all_answered()
    assert rosey.row("forker")["restarts"] == 0


@pytest.mark.parametrize("target", ["supervised", "plugin itself"])
async def test_children_die_with_a_sigkilled_plugin_reported_as_such(
    start_rosey: StartRosey, launcher: str, target: str
) -> None:
    rosey = await start(start_rosey, launcher)
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    first = supervised_pid(rosey)
    forked = await rosey.attempt("forker", "fork", 2)
    assert len(forked["pids"]) == 2 and forked["namespaced"], forked
    members = session_members(first)
    # The supervised process, the plugin, its two children, and whatever keeps the namespace.
    assert len(members) >= 4, members
    try:
        victim = first
        if target == "plugin itself":
            process = supervisor.get("forker").process
            assert process is not None
            victim = process.measured_pid  # the process that runs the plugin's code
            assert victim != first
        os.kill(victim, 9)
        plugin = await supervisor.wait_for_state("forker", killed_for("killed by SIGKILL"), timeout=20)
        assert plugin.last_exit == "killed by SIGKILL"
        assert not await all_gone(members), "a process of the plugin's outlived it"
        assert not session_members(first)
    finally:
        for pid in members:
            kill_quietly(pid)


async def test_one_child_too_many_kills_the_whole_tree(start_rosey: StartRosey, launcher: str) -> None:
    rosey = await start(start_rosey, launcher)
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    traffic = rosey.traffic()
    first = supervised_pid(rosey)
    within = await rosey.attempt("forker", "fork", 2)  # at the limit: allowed
    members = session_members(first)
    try:
        assert len(within["pids"]) == 2 and rosey.row("forker")["restarts"] == 0
        await rosey.attempt("forker", "fork", 1)
        plugin = await supervisor.wait_for_state("forker", killed_for("child processes"), timeout=20)
        assert plugin.last_exit is not None and "> limit 2" in plugin.last_exit, plugin.last_exit
        assert not await all_gone(members | session_members(first))
        assert not session_members(first)
        await supervisor.wait_for_state("forker", lambda p: p.state is PluginState.RUNNING, 20)
        await traffic.assert_all_answered()
    finally:
        for pid in members:
            kill_quietly(pid)


async def test_a_host_process_cannot_be_signalled(start_rosey: StartRosey, launcher: str) -> None:
    rosey = await start(start_rosey, launcher)
    victim = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdin.read()", stdin=asyncio.subprocess.PIPE
    )
    try:
        outcome = await rosey.attempt("forker", "kill", victim.pid)
        assert outcome["plugin"] != "sent" and outcome["child"] != "sent", outcome
        assert victim.returncode is None and not await wait_pid_gone(victim.pid, 0.2)
    finally:
        victim.kill()
        await victim.communicate()
    assert victim.returncode == -9  # it was alive until the test killed it


async def test_stop_is_graceful_and_a_default_sigterm_is_reported(
    start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start(start_rosey, launcher)
    supervisor = rosey.app.supervisor
    assert supervisor is not None
    await supervisor.stop("forker")
    assert supervisor.get("forker").last_exit == "exited cleanly"  # the SDK's SIGTERM handler ran
    await supervisor.start("forker")
    await rosey.attempt("forker", "sigterm_default")
    first = supervised_pid(rosey)
    await supervisor.stop("forker")
    # As for a plugin outside any namespace: SIGTERM's default action, not SIGKILL after the timeout.
    assert supervisor.get("forker").last_exit == "killed by SIGTERM"
    assert not session_members(first)
