"""Nothing Rosey started outlives ``rosey run``, even SIGKILLed; what could, the next run ends.

The real ``rosey run`` runs as a subprocess (as in ``tests/cli``), with a plugin allowed to
create processes (``max_processes = 2``) that leaves a child ignoring every signal and an
orphaned grandchild (whose parent tried ``setsid()`` first), beside the canary. Then
``rosey run`` is SIGKILLed, and every pid is watched from outside, on pidfds:

* with the default sandbox (PID namespace around the plugin's children), every process -- the
  plugins, their children, the zygote, nats-server -- is gone without anyone's help;
* with ``pid_namespace = false`` the children survive, and the next ``rosey run`` in the same
  state directory ends exactly them (one log line each), while an unrelated process whose pid
  the test writes into the record with another start time (a reused pid) is left alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.plugins.sandbox import seccomp
from bot.rosey.process_record import RECORD_FILENAME, proc_stat
from tests.cli.conftest import RunningRosey, rosey, start_run
from tests.processes import kill_quietly, wait_pid_gone
from tests.security.conftest import CANARY, FIXTURES, toml_table

FORKING = FIXTURES / "forking_plugin.py"

pytestmark = [
    pytest.mark.no_nats,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not seccomp.mode_filter_available()[0], reason="needs seccomp filters"),
    pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root"),
]


def write_config(workdir: Path, launcher: str, **forker: bool | int) -> None:
    text = toml_table(
        "rosey",
        {"sandbox": "best-effort", "launcher": launcher, "entry_points": False, "plugin_dirs": []},
    )
    text += toml_table("plugins.forker", {"path": str(FORKING), "max_processes": 2, **forker})
    text += toml_table("plugins.canary", {"path": str(CANARY)})
    (workdir / "rosey.toml").write_text(text)


async def send(workdir: Path, plugin: str, *args: str) -> dict[str, Any]:
    code, out, err = await rosey("send", plugin, *args, "--json", cwd=workdir)
    assert code == 0, (code, out, err)
    return dict(json.loads(out)["data"])


def _status_fields(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def descendants(root: int) -> Iterator[tuple[int, list[str]]]:
    """(host pid, NSpid column) of every live process below ``root``."""
    parents: dict[int, int] = {}
    nspids: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _status_fields(int(entry))
            if fields:
                parents[int(entry)] = int(fields["PPid"])
                nspids[int(entry)] = fields.get("NSpid", entry).split()
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor:
            if ancestor == root:
                yield pid, nspids[pid]
                break
            ancestor = parents.get(ancestor)


def host_pid(plugin_pid: int, reported: dict[str, Any]) -> int:
    """The host's pid of a process the plugin reported by its PID namespace's number."""
    if not reported["namespaced"]:
        return int(reported["pid"])
    (found,) = [pid for pid, ns in descendants(plugin_pid) if len(ns) > 1 and ns[-1] == str(reported["pid"])]
    return found


def alive(pid: int) -> bool:
    """Alive right now, judged by its pidfd (readable once it has exited): no waiting."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        return not select.select([fd], [], [], 0)[0]
    finally:
        os.close(fd)


async def start_bot(workdir: Path) -> tuple[RunningRosey, dict[str, Any]]:
    running = await start_run(workdir)
    status = await running.status()
    return running, status


async def leave_children(workdir: Path, status: dict[str, Any], pids: dict[str, int]) -> None:
    """Have the forking plugin leave its processes (into ``pids``); the canary answers throughout."""
    rows = {row["name"]: row for row in status["plugins"]}
    pids.update({"plugin forker": rows["forker"]["pid"], "plugin canary": rows["canary"]["pid"]})
    pids["nats-server"] = status["nats"]["pid"]
    if status["launcher"]["zygote_pid"]:
        pids["zygote"] = status["launcher"]["zygote_pid"]
    assert (await send(workdir, "canary", "before"))["message"] == "canary #1: before"
    stubborn = await send(workdir, "forker", "stubborn")
    pids["stubborn child"] = host_pid(pids["plugin forker"], stubborn)
    detached = await send(workdir, "forker", "detached")
    pids["orphaned grandchild"] = host_pid(pids["plugin forker"], detached)
    assert (await send(workdir, "canary", "after"))["message"] == "canary #2: after"
    for what, pid in pids.items():
        assert alive(pid), what
    # The sandbox denies setsid(): the grandchild stays in the plugin's session.
    assert detached["setsid"] == "EPERM", detached


async def sigkill(running: RunningRosey) -> None:
    running.proc.kill()
    await asyncio.wait_for(running.proc.wait(), 10)


async def stop(running: RunningRosey) -> None:
    if running.proc.returncode is None:
        running.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(running.proc.wait(), 30)


@pytest.mark.parametrize("launcher", ["zygote", "spawn"])
async def test_nothing_outlives_a_sigkilled_rosey_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: str
) -> None:
    monkeypatch.setenv("ROSEY_LAUNCHER", launcher)
    write_config(tmp_path, launcher)
    running, status = await start_bot(tmp_path)
    pids: dict[str, int] = {}
    try:
        assert status["launcher"]["kind"] == launcher
        await leave_children(tmp_path, status, pids)
        rows = {row["name"]: row for row in (await running.status())["plugins"]}
        assert rows["canary"]["restarts"] == 0 and rows["forker"]["restarts"] == 0
        await sigkill(running)
        survivors = [what for what, pid in pids.items() if not await wait_pid_gone(pid, 5.0)]
        assert not survivors, f"outlived a SIGKILLed rosey run: {survivors} ({pids})"
    finally:
        await stop(running)
        for pid in pids.values():
            kill_quietly(pid)


@pytest.mark.parametrize("launcher", ["zygote", "spawn"])
async def test_the_next_run_ends_what_a_killed_run_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: str
) -> None:
    monkeypatch.setenv("ROSEY_LAUNCHER", launcher)
    # Without the PID namespace the plugin's children are tied to nothing: they survive.
    write_config(tmp_path, launcher, pid_namespace=False)
    unrelated = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdin.read()", stdin=subprocess.PIPE, start_new_session=True
    )
    running, status = await start_bot(tmp_path)
    second: RunningRosey | None = None
    pids: dict[str, int] = {}
    try:
        await leave_children(tmp_path, status, pids)
        await sigkill(running)
        children = {what: pids[what] for what in ("stubborn child", "orphaned grandchild")}
        for what in set(pids) - set(children):  # these die with rosey run by themselves
            assert await wait_pid_gone(pids[what], 5.0), what
        assert all(alive(pid) for pid in children.values()), "nothing survived: the test proves nothing"

        # A recorded-looking entry whose pid now belongs to an unrelated process (pid reuse).
        record_path = tmp_path / ".rosey" / RECORD_FILENAME
        record = json.loads(record_path.read_text())
        real = proc_stat(unrelated.pid)
        assert real is not None
        record["processes"].append(
            {
                "role": "plugin",
                "name": "ghost",
                "pid": unrelated.pid,
                "start_time": real.start_time - 1,
                "session": unrelated.pid,
            }
        )
        record_path.write_text(json.dumps(record))

        second, _ = await start_bot(tmp_path)
        for what, pid in children.items():
            assert await wait_pid_gone(pid, 5.0), f"the next rosey run did not end the {what} (pid {pid})"
        log = (tmp_path / "rosey-run.log").read_text()
        ended = [line for line in log.splitlines() if "ended a leftover of a previous run" in line]
        for pid in children.values():
            assert any(f"pid {pid}," in line for line in ended), (pid, ended)
        assert unrelated.returncode is None and alive(unrelated.pid), "an unrelated process was killed"
        assert str(unrelated.pid) not in "\n".join(ended)
        assert (await send(tmp_path, "canary", "again"))["message"] == "canary #1: again"
    finally:
        await stop(running)
        if second is not None:
            await stop(second)
        for pid in pids.values():
            kill_quietly(pid)
        unrelated.kill()
        await unrelated.communicate()  # reaps it and closes its stdin pipe
