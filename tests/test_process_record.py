"""The process record and the end of leftovers, on real processes the test starts itself.

``tests/security/test_outliving_supervisor.py`` runs the whole story through ``rosey run``; here
each rule of the proof is checked alone: a recorded process and its session are ended; a pid
whose start time differs is never touched, nor is its session; a record of a live owner, or of
another boot, ends nothing; the file is private and goes away on a clean stop.
"""

from __future__ import annotations

import json
import logging
import os
import select
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.rosey.process_record import (
    RECORD_FILENAME,
    ProcessRecord,
    ProcessRole,
    end_leftovers,
    proc_stat,
)

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

# A session leader that forks a member of its session; both print their pid and wait forever.
LEADER = """
import os, signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # holds none of the leader's pipes
    signal.pause()
    os._exit(0)
print(os.getpid(), pid, flush=True)
sys.stdin.read()
"""


def alive(pid: int) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        return not select.select([fd], [], [], 0)[0]
    finally:
        os.close(fd)


@pytest.fixture
def sessions() -> Iterator[list[tuple[subprocess.Popen[str], int]]]:
    """Start session leaders on demand: ``(leader, member pid)``; all killed afterwards."""
    started: list[tuple[subprocess.Popen[str], int]] = []
    yield started
    for leader, member in started:
        for pid in (leader.pid, member):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        leader.communicate()


def start_session(started: list[tuple[subprocess.Popen[str], int]]) -> tuple[subprocess.Popen[str], int]:
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert leader.stdout is not None
    _, member = map(int, leader.stdout.readline().split())
    entry = (leader, member)
    started.append(entry)
    return entry


def write_record(state: Path, entries: list[dict[str, object]], **overrides: object) -> None:
    ProcessRecord(state)  # a valid file of a run that is "gone" (the test's own pid is skipped)...
    record = json.loads((state / RECORD_FILENAME).read_text())
    record["owner"] = {"pid": 1, "start_time": 0}  # ...owned by nobody alive
    record["processes"] = entries
    record.update(overrides)
    (state / RECORD_FILENAME).write_text(json.dumps(record))


def entry(pid: int, start_time: int, name: str = "p") -> dict[str, object]:
    return {"role": "plugin", "name": name, "pid": pid, "start_time": start_time, "session": pid}


def test_recorded_process_and_its_session_are_ended(
    tmp_path: Path, sessions: list[tuple[subprocess.Popen[str], int]], caplog: pytest.LogCaptureFixture
) -> None:
    leader, member = start_session(sessions)
    start = proc_stat(leader.pid)
    assert start is not None
    write_record(tmp_path, [entry(leader.pid, start.start_time)])
    with caplog.at_level(logging.WARNING, logger="bot.rosey.process_record"):
        ended = end_leftovers(tmp_path)
    assert sorted(e.pid for e in ended) == sorted([leader.pid, member])
    assert not alive(leader.pid) and not alive(member)
    lines = [r.getMessage() for r in caplog.records if "ended a leftover" in r.getMessage()]
    assert len(lines) == 2, lines
    assert not (tmp_path / RECORD_FILENAME).exists()


def test_a_leaderless_session_is_still_proven_by_its_id(
    tmp_path: Path, sessions: list[tuple[subprocess.Popen[str], int]]
) -> None:
    leader, member = start_session(sessions)
    start = proc_stat(leader.pid)
    assert start is not None
    leader.kill()
    leader.communicate()  # the leader is gone; its member keeps the session id (and the pid) in use
    write_record(tmp_path, [entry(leader.pid, start.start_time)])
    assert [e.pid for e in end_leftovers(tmp_path)] == [member]
    assert not alive(member)


def test_a_reused_pid_is_never_touched(
    tmp_path: Path, sessions: list[tuple[subprocess.Popen[str], int]]
) -> None:
    leader, member = start_session(sessions)
    start = proc_stat(leader.pid)
    assert start is not None
    write_record(tmp_path, [entry(leader.pid, start.start_time - 1)])  # another process had this pid
    assert end_leftovers(tmp_path) == []
    assert alive(leader.pid) and alive(member)


def test_a_live_owner_or_another_boot_ends_nothing(
    tmp_path: Path, sessions: list[tuple[subprocess.Popen[str], int]]
) -> None:
    leader, member = start_session(sessions)
    start = proc_stat(leader.pid)
    assert start is not None
    owner, _ = start_session(sessions)  # stands for a rosey run still running in that directory
    owner_start = proc_stat(owner.pid)
    assert owner_start is not None
    records = [
        {"owner": {"pid": owner.pid, "start_time": owner_start.start_time}},
        {"boot_id": "another-boot"},
    ]
    for overrides in records:
        write_record(tmp_path, [entry(leader.pid, start.start_time)], **overrides)
        assert end_leftovers(tmp_path) == []
        assert alive(leader.pid) and alive(member)


def test_the_record_is_private_current_and_gone_after_a_clean_stop(
    tmp_path: Path, sessions: list[tuple[subprocess.Popen[str], int]]
) -> None:
    first, _ = start_session(sessions)
    second, _ = start_session(sessions)
    record = ProcessRecord(tmp_path)
    path = tmp_path / RECORD_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record.started(ProcessRole.PLUGIN, "echo", first.pid)
    record.started(ProcessRole.PLUGIN, "echo", second.pid)  # a restart replaces its predecessor
    record.started(ProcessRole.NATS_SERVER, "nats-server", first.pid)
    saved = json.loads(path.read_text())
    assert [(p["role"], p["pid"]) for p in saved["processes"]] == [
        ("plugin", second.pid),
        ("nats-server", first.pid),
    ]
    assert saved["owner"]["pid"] == os.getpid()
    record.close()
    assert not path.exists()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"owner": {"pid": "x"}, "processes": [{"pid": "y"}, 7]}',
        '{"processes": [{"role": "plugin", "name": "p", "pid": -1, "start_time": 1, "session": 1}]}',
    ],
)
def test_an_unreadable_record_ends_nothing(tmp_path: Path, text: str) -> None:
    (tmp_path / RECORD_FILENAME).write_text(text)
    assert end_leftovers(tmp_path) == []
