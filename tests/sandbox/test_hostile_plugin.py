"""A hostile plugin, sandboxed by the real runner and launcher, tries to break out; NATS still works.

Each test starts ``fixtures/hostile_plugin.py`` through :class:`PluginProcess` with the default
policy of :meth:`SandboxPolicy.for_plugin` and asks it, over the bus, to try one attack.
The errno tells which layer refused: Landlock answers EACCES for files and TCP, EPERM for
scoped signals; seccomp answers EPERM (ENOSYS for clone3).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import psutil
import pytest

from bot.rosey.core.event_bus import EventBus
from bot.rosey.errors import PluginStartError
from bot.rosey.plugins.contract import Env
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.plugins.sandbox import landlock, seccomp
from tests.reach import refused
from tests.sandbox.conftest import ECHO, HOSTILE, StartPlugin, attack

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(landlock.abi_version()[0] < 6, reason="needs Landlock ABI 6 (fs, TCP, scoping)"),
    pytest.mark.skipif(not seccomp.mode_filter_available()[0], reason="needs seccomp filters"),
]


async def test_plugin_reads_its_runtime_but_not_the_host(
    start_plugin: StartPlugin, bus: EventBus, tmp_path: Path
) -> None:
    await start_plugin("hostile")
    config = tmp_path / "rosey.toml"
    config.write_text('token = "secret"\n')

    for path in (config, "/etc/passwd", REPO_ROOT / "pyproject.toml"):
        result = await attack(bus, "hostile", "read_file", path)
        assert refused(result), (path, result)
    listing = await attack(bus, "hostile", "list_dir", REPO_ROOT)
    assert refused(listing) or listing.get("value") == ["bot", "tests"], listing  # only what it may read

    for path in (HOSTILE, REPO_ROOT / "bot" / "rosey" / "core" / "events.py", "/dev/urandom"):
        result = await attack(bus, "hostile", "read_file", path)
        assert result["outcome"] == "allowed", (path, result)


async def test_plugin_writes_only_its_data_dir(
    start_plugin: StartPlugin, bus: EventBus, tmp_path: Path
) -> None:
    process = await start_plugin("hostile")
    inside = process.data_dir / "notes.txt"
    assert (await attack(bus, "hostile", "write_file", inside))["outcome"] == "allowed"
    assert inside.read_bytes() == b"xxxxx"
    for allowed in (process.data_dir / "tmp" / "t", "/dev/null"):
        assert (await attack(bus, "hostile", "write_file", allowed))["outcome"] == "allowed"

    for outside in (tmp_path / "planted.txt", Path("/tmp") / f"rosey-sandbox-{os.getpid()}.txt"):
        result = await attack(bus, "hostile", "write_file", outside)
        assert refused(result), result
        assert not outside.exists()


async def test_plugin_cannot_change_file_metadata(
    start_plugin: StartPlugin, bus: EventBus, tmp_path: Path
) -> None:
    """Landlock cannot stop chmod/utime, and root owns the host's files: seccomp denies them."""
    host_file = tmp_path / "host-owned.conf"
    host_file.write_text("x")
    host_file.chmod(0o600)
    before = host_file.stat()
    await start_plugin("hostile")
    for target in (host_file, HOSTILE):  # a file outside every grant, and one it may read
        for name in ("chmod", "utime"):
            result = await attack(bus, "hostile", name, target)
            assert (result["outcome"], result["errno"]) == ("denied", "EPERM"), (name, target, result)
    after = host_file.stat()
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)


async def test_tcp_only_to_nats(start_plugin: StartPlugin, bus: EventBus) -> None:
    accepted: list[object] = []

    def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await start_plugin("hostile")  # it connected to NATS to get ready
        result = await attack(bus, "hostile", "tcp_connect", "127.0.0.1", port)
        assert (result["outcome"], result["errno"]) == ("denied", "EACCES"), result
        fast_open = await attack(bus, "hostile", "tcp_fast_open", "127.0.0.1", port)  # seccomp's part
        assert (fast_open["outcome"], fast_open["errno"]) == ("denied", "EPERM"), fast_open
        bind = await attack(bus, "hostile", "tcp_bind")
        assert (bind["outcome"], bind["errno"]) == ("denied", "EACCES"), bind
        listen = await attack(bus, "hostile", "tcp_listen")  # the implicit bind: seccomp's part
        assert (listen["outcome"], listen["errno"]) == ("denied", "EPERM"), listen
        assert (await attack(bus, "hostile", "ping"))["value"] == "pong"  # NATS still works
    finally:
        server.close()
        await server.wait_closed()
    assert accepted == []


async def test_udp_raw_and_packet_sockets_denied(start_plugin: StartPlugin, bus: EventBus) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.setblocking(False)
        await start_plugin("hostile")
        udp = await attack(bus, "hostile", "udp_send", "127.0.0.1", listener.getsockname()[1])
        assert (udp["outcome"], udp["errno"]) == ("denied", "EPERM"), udp
        with pytest.raises(BlockingIOError):
            listener.recv(100)
    for kind in ("raw_socket", "packet_socket"):
        result = await attack(bus, "hostile", kind)
        assert (result["outcome"], result["errno"]) == ("denied", "EPERM"), result


async def test_unix_sockets_outside_denied(start_plugin: StartPlugin, bus: EventBus, tmp_path: Path) -> None:
    """Landlock (ABI <= 7) does not cover connect() to a pathname socket: seccomp must stop it."""
    with socket.socket(socket.AF_UNIX) as pathname, socket.socket(socket.AF_UNIX) as abstract:
        pathname.bind(str(tmp_path / "host.sock"))
        pathname.listen()
        abstract_name = f"rosey-test-{os.getpid()}"
        abstract.bind("\0" + abstract_name)
        abstract.listen()
        await start_plugin("hostile")
        for address in (str(tmp_path / "host.sock"), "@" + abstract_name):
            result = await attack(bus, "hostile", "unix_connect", address)
            assert (result["outcome"], result["errno"]) == ("denied", "EPERM"), (address, result)


async def test_signals_ptrace_and_limits_of_outside_processes_denied(
    start_plugin: StartPlugin, bus: EventBus
) -> None:
    victim = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdin.read()", stdin=asyncio.subprocess.PIPE
    )
    limits_before = psutil.Process(victim.pid).rlimit(psutil.RLIMIT_NOFILE)
    nice_before = psutil.Process(victim.pid).nice()
    try:
        await start_plugin("hostile")
        for sig in (0, signal.SIGTERM, signal.SIGKILL):
            result = await attack(bus, "hostile", "kill", victim.pid, int(sig))
            assert (result["outcome"], result["errno"]) == ("denied", "EPERM"), (sig, result)
        for name in ("ptrace", "prlimit", "renice"):
            result = await attack(bus, "hostile", name, victim.pid)
            assert (result["outcome"], result["errno"]) == ("denied", "EPERM"), (name, result)
        assert psutil.Process(victim.pid).rlimit(psutil.RLIMIT_NOFILE) == limits_before
        assert psutil.Process(victim.pid).nice() == nice_before
        assert victim.returncode is None
        os.kill(victim.pid, 0)  # still there
        assert psutil.Process(victim.pid).status() != psutil.STATUS_TRACING_STOP
    finally:
        assert victim.stdin is not None
        victim.stdin.close()
        await asyncio.wait_for(victim.wait(), 10)


async def test_fork_bomb_creates_no_process_and_neighbours_keep_answering(
    start_plugin: StartPlugin, bus: EventBus
) -> None:
    hostile = await start_plugin("hostile")
    await start_plugin("echo", ECHO)

    async def echo_until(done: asyncio.Event) -> int:
        answered = 0
        while not done.is_set():
            reply = await attack(bus, "echo", "still", "here")
            assert "still here" in reply["message"]
            answered += 1
        return answered

    done = asyncio.Event()
    canary = asyncio.create_task(echo_until(done))
    try:
        bomb = await attack(bus, "hostile", "fork_many", 500)
        single = await attack(bus, "hostile", "fork")
        spawn = await attack(bus, "hostile", "spawn")
        execve = await attack(bus, "hostile", "exec")
    finally:
        done.set()
    assert await asyncio.wait_for(canary, 10) >= 1

    assert bomb["value"] == {"created": 0, "errors": ["EPERM"]}, bomb
    assert (single["outcome"], single["errno"]) == ("denied", "EPERM"), single
    assert (spawn["outcome"], spawn["errno"]) == ("denied", "EPERM"), spawn
    assert (execve["outcome"], execve["errno"]) == ("denied", "EPERM"), execve
    assert psutil.Process(hostile.pid).children(recursive=True) == []
    assert (await attack(bus, "hostile", "thread"))["value"] == "ran"  # threads still work
    unshare = await attack(bus, "hostile", "unshare_net")
    assert (unshare["outcome"], unshare["errno"]) == ("denied", "EPERM"), unshare


async def test_limits_and_privileges(start_plugin: StartPlugin, bus: EventBus) -> None:
    process = await start_plugin("hostile", max_open_files=64, max_file_size_mb=1)
    limits = (await attack(bus, "hostile", "limits"))["value"]
    assert limits["RLIMIT_NOFILE"] == [64, 64]
    assert limits["RLIMIT_FSIZE"] == [1024 * 1024, 1024 * 1024]
    assert limits["RLIMIT_CORE"] == [0, 0]
    big = await attack(bus, "hostile", "write_file", process.data_dir / "big", 2 * 1024 * 1024)
    assert (big["outcome"], big["errno"]) == ("error", "EFBIG"), big

    assert process.pid is not None
    status_text = await asyncio.to_thread(Path(f"/proc/{process.pid}/status").read_text)
    status = dict(line.split(":", 1) for line in status_text.splitlines() if ":" in line)
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"
    for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"):
        assert int(status[field], 16) == 0, field


async def test_strict_policy_starts_where_the_kernel_supports_everything(
    start_plugin: StartPlugin, bus: EventBus
) -> None:
    process = await start_plugin("hostile_strict", strict=True)
    assert (await attack(bus, "hostile_strict", "ping"))["value"] == "pong"
    stderr = (await process.get_output(50))["stderr"]
    assert "rosey sandbox" not in stderr  # nothing missing, nothing to warn about


async def test_unreadable_policy_refuses_to_run(nats_server: object, tmp_path: Path) -> None:
    """A sandbox was asked for but cannot be read: exit 78 before any plugin code, not run bare."""
    options = ProcessOptions(data_dir=tmp_path / "data", extra_env={Env.SANDBOX: "{not json"})
    process = PluginProcess("hostile", HOSTILE, options=options)
    with pytest.raises(PluginStartError) as failure:
        await process.start()
    assert process.returncode == 78, failure.value
    assert "rosey sandbox: invalid ROSEY_SANDBOX policy" in str(failure.value)
