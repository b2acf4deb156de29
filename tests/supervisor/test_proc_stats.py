"""The watchdog's /proc readings: the figures psutil gives, one read, never a stranger's."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import psutil
import pytest

from bot.rosey.plugins.plugin_runner import PluginProcess
from bot.rosey.supervision import disk
from bot.rosey.supervision.disk import DiskGuard, DiskTarget, DiskWatch
from bot.rosey.supervision.proc_stats import ProcStat
from tests.supervisor.conftest import disk_target, measured_process

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

MB = 1024 * 1024

BUSY_CHILD = """
import sys, threading, time
data = bytearray(48 * 1024 * 1024)  # touched: resident
for i in range(0, len(data), 4096):
    data[i] = 1
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("ready", flush=True)
time.sleep(60)
"""


def start_child(code: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def test_a_reading_matches_psutil() -> None:
    child = start_child(BUSY_CHILD)
    try:
        proc = ProcStat(child.pid)
        reading = proc.read()
        assert reading is not None
        ps = psutil.Process(child.pid)
        with ps.oneshot():
            times = ps.cpu_times()
            rss, threads, fds = ps.memory_info().rss, ps.num_threads(), ps.num_fds()
        assert reading.num_threads == threads == 2
        assert reading.num_fds == fds
        assert abs(reading.memory_bytes - rss) < 4 * MB and reading.memory_bytes > 48 * MB
        assert abs(reading.cpu_seconds - (times.user + times.system)) < 0.05
        assert reading.cpu_seconds >= 0.25
        assert reading.cpu_percent == 0.0  # the first reading has nothing to compare with
        later = proc.read()
        assert later is not None and later.cpu_percent < 50  # it sleeps now
        proc.close()
    finally:
        stop(child)


def stop(child: subprocess.Popen[str]) -> None:
    child.kill()
    child.wait()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()


def test_a_gone_process_reads_as_gone_even_when_its_pid_is_reused() -> None:
    child = start_child("print('ready', flush=True); import time; time.sleep(60)")
    proc = ProcStat(child.pid)
    assert proc.read() is not None
    stop(child)  # reaped: the pid is free for anyone
    assert proc.read() is None  # the kept files belong to the dead process, not to its pid
    proc.close()
    assert ProcStat(child.pid).read() is None or psutil.pid_exists(child.pid)


async def until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (R, S, T for stopped, ...)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2]


WRITER = """
import os, sys, time
print("ready", flush=True)
sys.stdin.readline()
block = os.urandom(1024 * 1024)
with open(os.path.join(sys.argv[1], "fill"), "wb") as f:
    for _ in range(4096):
        f.write(block)
        f.flush()
"""


def start_writer(data_dir: Path) -> subprocess.Popen[str]:
    """A process that fills ``data_dir`` once told to (a line on its stdin)."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    return writer


async def test_the_disk_guard_freezes_a_process_over_its_quota_and_hands_the_kill_to_the_loop(
    tmp_path: Path,
) -> None:
    """On its own thread; the loop hears of it through ``on_over``, the process is stopped at once."""
    writer = start_writer(tmp_path)
    assert writer.stdin is not None
    process = measured_process(writer.pid, tmp_path)
    target = disk_target(process, tmp_path, 8)
    loop = asyncio.get_running_loop()
    over: asyncio.Future[tuple[str, int, str]] = loop.create_future()

    def on_over(name: str, pid: int, reason: str) -> None:
        if not over.done():
            over.set_result((name, pid, reason))

    guard = DiskGuard(DiskWatch(), lambda: [cast(DiskTarget, target)], on_over, loop=loop, interval=0.05)
    guard.start()
    try:
        writer.stdin.write("go\n")
        writer.stdin.flush()
        name, pid, reason = await asyncio.wait_for(over, 20)
        assert (name, pid) == ("w", writer.pid)
        assert reason.startswith("disk ") and reason.endswith("> limit 8 MB"), reason
        # Frozen (stopped: it writes no more), not killed: the signal takes effect as soon as the
        # writer leaves the kernel (it may be mid-write on the other CPU).
        assert await until(lambda: process_state(writer.pid) == "T", 5)
        assert cast(Any, target).disk is not None and cast(Any, target).disk.bytes > 8 * MB
    finally:
        await asyncio.to_thread(guard.stop)
        stop(writer)


async def test_between_full_passes_the_guard_reads_plugins_near_their_quota_and_wakes_for_new_ones(
    tmp_path: Path,
) -> None:
    """Full passes 30 s apart: a process launched meanwhile is measured when :meth:`wake` is
    called, and one writing toward its quota is caught by the quick passes that follow its
    headroom (a 0.1 s pass let 346 MB past a 64 MB quota on this machine's page cache)."""
    writer = start_writer(tmp_path)
    assert writer.stdin is not None
    process = measured_process(writer.pid, tmp_path)
    target = disk_target(process, tmp_path, 8)
    targets: list[DiskTarget] = []
    loop = asyncio.get_running_loop()
    over: asyncio.Future[str] = loop.create_future()

    def on_over(name: str, pid: int, reason: str) -> None:
        if not over.done():
            over.set_result(reason)

    guard = DiskGuard(DiskWatch(), lambda: list(targets), on_over, loop=loop, interval=30)
    guard.start()
    try:
        assert await until(lambda: guard.passes == 1, 5)  # the first full pass: nothing to measure
        targets.append(cast(DiskTarget, target))
        guard.wake()  # as the watchdog does when a plugin process reports its launch
        assert await until(lambda: target.disk is not None, 5)
        writer.stdin.write("go\n")
        writer.stdin.flush()
        reason = await asyncio.wait_for(over, 20)
        assert reason.startswith("disk ") and reason.endswith("> limit 8 MB"), reason
        assert await until(lambda: process_state(writer.pid) == "T", 5)
        assert guard.passes == 2 and guard.quick_passes > 0  # the wake's pass, then quick ones only
        assert target.disk is not None and 8 * MB < target.disk.bytes < (8 + 320) * MB
    finally:
        await asyncio.to_thread(guard.stop)
        stop(writer)


def test_a_plugin_far_below_its_quota_has_its_write_counter_read_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its next read is due when it could have reached its quota writing at ASSUMED_WRITE_RATE."""
    clock = [1000.0]
    monkeypatch.setattr(
        disk, "time", SimpleNamespace(monotonic=lambda: clock[0], perf_counter=time.perf_counter)
    )
    reads = []
    real_written = disk._written

    def counted(*args: Any) -> int | None:
        reads.append(clock[0])
        return real_written(*args)

    monkeypatch.setattr(disk, "_written", counted)
    process = measured_process(os.getpid(), tmp_path)
    watch = DiskWatch()
    assert watch.check_now("far", process, 1024, children=False) is None  # walked: a new process
    assert watch.check_now("far", process, 1024, children=False) is None
    assert len(reads) == 2  # the second pass read the counter, and set when the next is due
    clock[0] += 0.1  # one disk interval later: 1 GB cannot have been written yet
    assert watch.check_now("far", process, 1024, children=False) is None
    assert len(reads) == 2
    clock[0] += 1024 * MB / disk.ASSUMED_WRITE_RATE  # by now it could have
    assert watch.check_now("far", process, 1024, children=False) is None
    assert len(reads) == 3

    (tmp_path / "near").write_bytes(os.urandom(7 * MB))
    near = DiskWatch()
    assert near.check_now("near", process, 8, children=False) is None  # 7 MB of 8 MB
    for _ in range(3):  # 1 MB of headroom: read every pass
        clock[0] += 0.1
        assert near.check_now("near", process, 8, children=False) is None
    assert len(reads) == 3 + 4


def test_descriptors_are_counted_when_asked_and_the_last_count_repeated_otherwise() -> None:
    """s-thousand: the watchdog skips the fd listdir on most sweeps; a skipped count is the last one,
    never a made-up one, and the first reading always counts."""
    code = (
        "import os, sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\n"
        "fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(20)]\nprint('opened', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        proc = ProcStat(child.pid)
        first = proc.read(count_fds=False)  # nothing counted yet: counts anyway
        assert first is not None and first.num_fds == psutil.Process(child.pid).num_fds()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "opened"
        skipped = proc.read(count_fds=False)
        assert skipped is not None and skipped.num_fds == first.num_fds
        counted = proc.read(count_fds=True)
        assert counted is not None and counted.num_fds == first.num_fds + 20
        proc.close()
    finally:
        stop(child)
        if child.stdin is not None:
            child.stdin.close()


def test_the_watchdog_trusts_the_kernel_with_open_files_only_where_the_launcher_applied_rlimits() -> None:
    """s-thousand: with the sandbox's rlimits applied (the launcher's report) the kernel holds the
    plugin under RLIMIT_NOFILE and the watchdog counts descriptors only every few sweeps; without
    them (no sandbox, or rlimits failed) it must count on every sweep to enforce the limit itself."""
    from bot.rosey.plugins.contract import LaunchReport
    from bot.rosey.supervision.watchdog import _kernel_caps_fds

    def process(report: LaunchReport | None) -> PluginProcess:
        return cast(PluginProcess, SimpleNamespace(launch_report=report))

    assert _kernel_caps_fds(process(LaunchReport(sandbox=("rlimits", "seccomp"))))
    assert not _kernel_caps_fds(process(LaunchReport(sandbox=("seccomp",))))  # rlimits failed
    assert not _kernel_caps_fds(process(LaunchReport(sandbox=None)))  # no sandbox asked for
    assert not _kernel_caps_fds(process(None))  # not reported (yet)
