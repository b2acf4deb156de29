"""What a plugin can do to its neighbours and its host through the kernel objects they share.

Each attack is made by ``fixtures/kernel_plugin.py`` through the real supervisor, under both
launchers, while the canary answers commands. Every verdict is read from outside the plugin:
the supervisor's survival of the plugin (pidfd), the canary's scheduling settings (psutil), the
plugin's descriptors and limits (``/proc/PID``), the host's own system calls (this process), and
what reached a socket this test owns. A plugin's report of its own success is never the evidence.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import signal
import socket
import struct
import termios
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from bot.rosey.plugins.sandbox import SandboxPolicy, landlock, seccomp
from tests.cli.conftest import rosey as rosey_cli
from tests.cli.conftest import start_run
from tests.processes import kill_quietly, wait_pid_gone
from tests.reach import refused
from tests.security.conftest import CANARY, FIXTURES, Rosey, StartRosey, toml_table

pytestmark = [
    pytest.mark.no_nats,
    pytest.mark.timeout(60),
    pytest.mark.skipif(landlock.abi_version()[0] < 6, reason="needs Landlock ABI 6 (fs, TCP, scoping)"),
    pytest.mark.skipif(not seccomp.mode_filter_available()[0], reason="needs seccomp filters"),
]

KERNEL = FIXTURES / "kernel_plugin.py"
F_GETPIPE_SZ = 1032
DEFAULT_PIPE = 65536  # 16 pages: what a pipe gets unless someone grows it

_libc = ctypes.CDLL(None, use_errno=True)


async def start(start_rosey: StartRosey, launcher: str, sandbox: str = "best-effort") -> Rosey:
    return await start_rosey(
        {"hostile": {"path": str(KERNEL)}, "canary": {}}, launcher=launcher, sandbox=sandbox
    )


def fd_targets(pid: int) -> dict[int, str]:
    """The plugin's descriptors as the kernel names them (``pipe:[…]``, ``/memfd:… (deleted)``, …)."""
    targets = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
    return targets


def notification_fds(pid: int) -> list[str]:
    """inotify or fanotify instances the process holds, with their marks, from its fdinfo."""
    found = []
    for fd, target in fd_targets(pid).items():
        if target in ("anon_inode:inotify", "anon_inode:[fanotify]"):
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
            found.append(
                f"{target}: {[line for line in info.splitlines() if 'wd:' in line or 'mask' in line]}"
            )
    return found


def memfd_bytes(pid: int) -> int:
    """Memory held in memfds (mapped or not): what an RSS figure never shows."""
    held = 0
    for fd, target in fd_targets(pid).items():
        if target.startswith("/memfd:"):
            held += os.stat(f"/proc/{pid}/fd/{fd}").st_blocks * 512
    return held


def pipes(pid: int) -> list[tuple[int, int]]:
    """(capacity, bytes queued) of every pipe the process holds, read through a second read end."""
    found = []
    for fd, target in fd_targets(pid).items():
        if not target.startswith("pipe:"):
            continue
        reader = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
        try:
            queued = struct.unpack("i", fcntl.ioctl(reader, termios.FIONREAD, b"\0\0\0\0"))[0]
            found.append((fcntl.fcntl(reader, F_GETPIPE_SZ), queued))
        finally:
            os.close(reader)
    return found


def socket_bytes(pid: int) -> int:
    """Bytes queued for reading on the process's sockets, through duplicates taken with pidfd_getfd."""
    pidfd = os.pidfd_open(pid)
    held = 0
    try:
        for fd, target in fd_targets(pid).items():
            if not target.startswith("socket:"):
                continue
            copy = _libc.syscall(
                ctypes.c_long(438), ctypes.c_long(pidfd), ctypes.c_long(fd), ctypes.c_long(0)
            )
            if copy < 0:
                continue  # closed meanwhile
            try:
                held += struct.unpack("i", fcntl.ioctl(copy, termios.FIONREAD, b"\0\0\0\0"))[0]
            finally:
                os.close(copy)
    finally:
        os.close(pidfd)
    return held


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def scheduling(pid: int) -> dict[str, Any]:
    process = psutil.Process(pid)
    return {
        "nice": process.nice(),
        "affinity": process.cpu_affinity(),
        "policy": os.sched_getscheduler(pid),
        "ionice": tuple(process.ionice()),
    }


async def finish(rosey: Rosey, traffic: Any) -> None:
    await traffic.assert_all_answered()
    assert rosey.row("canary")["restarts"] == 0
    assert rosey.row("canary")["state"] == "running"


# ---------------------------------------------------------------------- 1. outliving the supervisor


@pytest.mark.timeout(90)
async def test_no_plugin_outlives_a_sigkilled_supervisor(tmp_path: Path, launcher: str) -> None:
    config = toml_table(
        "rosey",
        {"launcher": launcher, "sandbox": "best-effort", "entry_points": False, "plugin_dirs": []},
    )
    config += toml_table("plugins.hostile", {"path": str(KERNEL)})
    config += toml_table("plugins.canary", {"path": str(CANARY)})
    (tmp_path / "rosey.toml").write_text(config)
    bot = await start_run(tmp_path)
    pids: list[int] = []
    try:
        rows = {row["name"]: row for row in (await bot.status())["plugins"]}
        pids = [rows["hostile"]["pid"], rows["canary"]["pid"]]
        reports = []
        for signum in (0, int(signal.SIGUSR1)):  # clear it; or trade it for a signal it ignores
            code, out, err = await rosey_cli(
                "send", "hostile", "pdeathsig", str(signum), "--json", cwd=tmp_path
            )
            assert code == 0, err
            reports.append(json.loads(out)["data"])
        for word in ("one", "two"):
            code, _, err = await rosey_cli("send", "canary", word, cwd=tmp_path)
            assert code == 0, err
        rows = {row["name"]: row for row in (await bot.status())["plugins"]}
        assert [rows[name]["pid"] for name in ("hostile", "canary")] == pids  # nothing restarted
        assert rows["canary"]["restarts"] == 0

        bot.proc.kill()
        await bot.proc.wait()
        for pid in pids:
            assert await wait_pid_gone(pid, 5.0), (
                f"plugin pid {pid} outlived a SIGKILLed rosey run: {reports}"
            )
        for report in reports:  # evidence only: the verdict is the plugin's death above
            assert (report["outcome"], report.get("errno")) == ("denied", "EPERM"), report
    finally:
        if bot.proc.returncode is None:
            bot.proc.kill()
            await bot.proc.wait()
        for pid in pids:
            kill_quietly(pid)


# ---------------------------------------------------------------------- 2. siblings' scheduling


async def test_scheduling_calls_reach_only_the_caller(start_rosey: StartRosey, launcher: str) -> None:
    rosey = await start(start_rosey, launcher)
    canary, hostile = rosey.row("canary")["pid"], rosey.row("hostile")["pid"]
    before = scheduling(canary)
    traffic = rosey.traffic()
    group = os.getpgid(canary)
    attempts: list[tuple[object, ...]] = [
        ("renice", canary),
        ("affinity", canary),
        ("sched_idle", canary),
        ("sched_setattr", canary),
        ("ioprio", canary),
        ("renice", group, "pgrp"),
        ("ioprio", group, "pgrp"),
        ("renice", 0, "pgrp"),  # its own group: still a group
        # Last: without the filter these reach every capability-less root process on the host.
        ("renice", 0, "user"),
        ("ioprio", 0, "user"),
    ]
    for attempt in attempts:
        report = await rosey.attempt("hostile", *attempt)
        assert scheduling(canary) == before, (attempt, report)
        assert (report["outcome"], report["errno"]) == ("denied", "EPERM"), (attempt, report)
    # A plugin still manages its own scheduling, by 0 or by its own pid.
    assert (await rosey.attempt("hostile", "renice", 0))["outcome"] == "allowed"
    assert (await rosey.attempt("hostile", "affinity", hostile))["outcome"] == "allowed"
    assert (await rosey.attempt("hostile", "ioprio", 0))["outcome"] == "allowed"
    own = scheduling(hostile)
    assert (own["nice"], own["affinity"], own["ionice"][0]) == (19, [0], psutil.IOPRIO_CLASS_IDLE)
    assert scheduling(canary) == before
    await finish(rosey, traffic)


# ---------------------------------------------------------------------- 5. memory outside RSS


async def test_memory_outside_rss_is_unavailable(start_rosey: StartRosey, launcher: str) -> None:
    rosey = await start(start_rosey, launcher)
    hostile = rosey.row("hostile")["pid"]
    traffic = rosey.traffic()

    report = await rosey.attempt("hostile", "memfd", 300, timeout=30)
    assert memfd_bytes(hostile) == 0, report
    assert (report["outcome"], report["errno"]) == ("denied", "EPERM"), report
    for name in ("memfd_secret", "vmsplice"):
        report = await rosey.attempt("hostile", name)
        assert (report["outcome"], report["errno"]) == ("denied", "EPERM"), (name, report)

    # 200 pipes of 1 MiB each, filled, write ends closed (the data stays while a read end is open).
    report = await rosey.attempt("hostile", "pipe_grow", 200, 1, timeout=30)
    held = pipes(hostile)
    assert len(held) >= 200, report
    # No pipe grew past the default: RLIMIT_NOFILE x 64 KiB bounds what a plugin holds in pipes.
    assert max(capacity for capacity, _ in held) == DEFAULT_PIPE, report
    nofile = psutil.Process(hostile).rlimit(psutil.RLIMIT_NOFILE)[1]
    assert sum(queued for _, queued in held) <= nofile * DEFAULT_PIPE
    assert report["grown"] == 0 and report["errors"] == ["EPERM"], report

    # Socket buffers: 20 stream pairs, both directions filled after asking for 64 MiB buffers.
    report = await rosey.attempt("hostile", "socket_fill", 20, timeout=30)
    # At the default buffer size a descriptor holds ~233 KB (measured); grown, 8.2 MB.
    assert socket_bytes(hostile) <= 40 * 256 * 1024, report
    assert report["grown"] == 0 and report["errors"] == ["EPERM"], report

    # Page tables: one byte read every 2 MiB of a huge read-only mapping (RSS does not move).
    report = await rosey.attempt("hostile", "page_tables", 40_000, timeout=30)
    ceiling_kb = SandboxPolicy().max_address_space_mb * 1024 // 512  # type: ignore[operator]
    assert status_kb(hostile, "VmPTE") <= ceiling_kb + 4096, report
    assert rosey.row("hostile")["restarts"] == 0
    await finish(rosey, traffic)


# ---------------------------------------------------------------------- 7. per-user kernel limits


async def test_inotify_instances_stay_the_hosts(start_rosey: StartRosey, launcher: str) -> None:
    rosey = await start(start_rosey, launcher)
    hostile = rosey.row("hostile")["pid"]
    traffic = rosey.traffic()
    report = await rosey.attempt("hostile", "inotify_exhaust")
    fd = _libc.inotify_init1(os.O_CLOEXEC)  # the host's own, after the plugin took what it could
    assert fd >= 0, (os.strerror(ctypes.get_errno()), report)
    os.close(fd)
    assert notification_fds(hostile) == [], report
    assert (report["instances"], report["stopped_by"]) == (0, "EPERM"), report
    await finish(rosey, traffic)


async def test_queued_signals_cannot_starve_the_host(start_rosey: StartRosey, launcher: str) -> None:
    rosey = await start(start_rosey, launcher)
    hostile = rosey.row("hostile")["pid"]
    traffic = rosey.traffic()
    report = await rosey.attempt("hostile", "sigqueue_flood", 200_000, timeout=30)
    # The host queues realtime signals to itself (blocked, then taken back) after the flood.
    sig = signal.SIGRTMIN + 5
    me = threading.get_ident()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
    sent = 0
    try:
        for _ in range(100):
            signal.pthread_kill(me, sig)
            sent += 1
    except OSError as exc:
        pytest.fail(f"the host could queue {sent} signals, then {exc!r}; plugin: {report}")
    finally:
        while signal.sigtimedwait({sig}, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    assert psutil.Process(hostile).rlimit(psutil.RLIMIT_SIGPENDING) == (64, 64)
    assert report["queued"] <= 64 and report["stopped_by"] == "EAGAIN", report
    await finish(rosey, traffic)


# ---------------------------------------------------------------------- 8. watching the host's files


async def test_watching_files_outside_the_sandbox_is_denied(start_rosey: StartRosey, launcher: str) -> None:
    rosey = await start(start_rosey, launcher)
    hostile = rosey.row("hostile")["pid"]
    traffic = rosey.traffic()
    for path in (rosey.state_dir, rosey.state_dir / "data" / "canary", rosey.workdir / "rosey.toml"):
        for attempt in ("inotify_watch", "fanotify_watch"):
            report = await rosey.attempt("hostile", attempt, path)
            assert notification_fds(hostile) == [], (attempt, path, report)
            assert (report["outcome"], report["errno"]) == ("denied", "EPERM"), (attempt, path, report)
    await finish(rosey, traffic)


# ---------------------------------------------------------------------- 9. the mount table


async def test_the_mount_table_stays_hidden(start_rosey: StartRosey, launcher: str) -> None:
    request = struct.pack("<IIQQ", 24, 0, 0xFFFFFFFFFFFFFFFF, 0)
    ids = (ctypes.c_uint64 * 64)()
    listmount = 458  # one number on every architecture (the unified table)
    found = _libc.syscall(ctypes.c_long(listmount), request, ids, ctypes.c_long(64), ctypes.c_long(0))
    if found < 0 and ctypes.get_errno() == errno.ENOSYS:
        pytest.skip("this kernel has no listmount()")
    assert found > 0  # outside the sandbox the call works and lists this machine's mounts

    rosey = await start(start_rosey, launcher)
    traffic = rosey.traffic()
    for attempt in ("listmount", "statmount"):
        report = await rosey.attempt("hostile", attempt)
        assert "value" not in report, report  # no mount point left the plugin
        assert (report["outcome"], report["errno"]) == ("denied", "EPERM"), report
    for path in ("/proc/self/mountinfo", "/proc/mounts", "/proc/1/mountinfo"):
        report = await rosey.attempt("hostile", "read_file", path)
        assert "value" not in report, report
        # Landlock refuses it (EACCES); with the private file-system view /proc is not there.
        assert refused(report), (path, report)
    await finish(rosey, traffic)


# ---------------------------------------------------------------------- 10. unix datagrams


async def test_unix_datagrams_never_reach_a_pathname_socket(
    start_rosey: StartRosey, launcher: str, tmp_path: Path
) -> None:
    path = tmp_path / "host-dgram.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as host:
        host.bind(str(path))
        host.setblocking(False)
        rosey = await start(start_rosey, launcher)
        traffic = rosey.traffic()
        report = await rosey.attempt("hostile", "unix_dgram", path)
        # A unix datagram is queued on the receiver before sendto() returns: the plugin's answer
        # came after every attempt, so whatever reached this socket is here now.
        with pytest.raises(BlockingIOError):
            received = host.recvmsg(4096, socket.CMSG_SPACE(16))
            pytest.fail(f"the plugin's datagram arrived: {received}; plugin: {report}")
    for name in ("socket_dgram", "dgram_pair_sendto", "dgram_pair_sendmsg_rights", "dgram_pair_connect"):
        assert (report[name]["outcome"], report[name]["errno"]) == ("denied", "EPERM"), (name, report)
    # A connected stream pair refuses an address (EISCONN) and a second connect (EPROTOTYPE to a
    # datagram socket, EISCONN to a listener); a seqpacket pair ignores the address and sends to its
    # own peer, which is why those two may succeed without anything reaching the host's socket.
    # With the private file-system view the socket's path does not even exist for it (ENOENT).
    for name in ("stream_pair_sendto", "stream_pair_sendmsg_rights", "stream_pair_connect"):
        assert report[name]["errno"] in ("EISCONN", "EPROTOTYPE", "ENOENT"), (name, report)
    assert report["seqpacket_pair_connect"]["errno"] in ("EISCONN", "EPROTOTYPE", "ENOENT"), report
    await finish(rosey, traffic)
