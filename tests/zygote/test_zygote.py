"""Plugins forked by the zygote: same process as a spawned plugin, faster, and no leaks between them.

Real processes throughout; waits are on replies, exits (pidfds) and the zygote's answers, never
on timers. The fixture plugin ``fixtures/introspect_plugin.py`` reports what its process looks
like from the inside.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from pathlib import Path

import psutil
import pytest

from bot.rosey.broker.nats_server import NatsServer
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import PluginStartError
from bot.rosey.plugins.plugin_runner import LAUNCHER_ENV, PluginProcess, ProcessOptions, default_launcher
from bot.rosey.plugins.process.child_exit import ForeignChild
from bot.rosey.plugins.process.zygote import Zygote, ZygoteError, shared_zygote, template_environment
from bot.rosey.plugins.sandbox import SandboxPolicy, landlock, seccomp
from tests.processes import wait_pid_gone
from tests.reach import refused

from .conftest import INTROSPECT, LAUNCHERS, Ask, RunPlugin

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"


def zygote_children(zygote: Zygote) -> list[int]:
    assert zygote.pid is not None
    return [child.pid for child in psutil.Process(zygote.pid).children()]


def read_environ(pid: int) -> str:
    with open(f"/proc/{pid}/environ", "rb") as stream:
        return stream.read().decode()


def memory_contains(pid: int, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere in the writable memory of process ``pid`` (heap, stack, data)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("rw"):
                continue
            start, end = (int(address, 16) for address in fields[0].split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except OSError:  # [vvar] and friends
                continue
            if needle in chunk:
                return True
    return False


# ---------------------------------------------------------------------------- it works


async def test_plugin_starts_answers_and_stops_via_the_zygote(
    run_plugin: RunPlugin, ask: Ask, zygote: Zygote
) -> None:
    process = await run_plugin("introspect")
    assert isinstance(process.process, ForeignChild)
    assert process.launcher == "zygote"
    facts = await ask("introspect", "describe")
    assert facts["pid"] == process.pid
    assert facts["ppid"] == zygote.pid != os.getpid()  # the zygote's child, not ours
    assert psutil.Process(process.pid).ppid() == zygote.pid

    stats = process.get_stats()
    assert stats["running"] is True and stats["pid"] == process.pid and stats["memory_mb"] > 0
    assert "Plugin 'introspect' running" in (await process.get_output())["stderr"]
    assert process.ready_seconds is not None

    assert await process.stop() == 0  # SIGTERM: on_stop ran, clean exit
    assert process.last_exit == "exited cleanly"
    assert not process.is_running() and process.get_stats()["running"] is False
    assert not psutil.pid_exists(process.pid)  # reaped by the zygote before it reported


async def test_the_spawn_launcher_still_works_when_selected(run_plugin: RunPlugin, ask: Ask) -> None:
    process = await run_plugin("introspect", "spawn")
    assert isinstance(process.process, subprocess.Popen)
    assert (await ask("introspect", "describe"))["ppid"] == os.getpid()
    assert await process.stop() == 0


def test_default_launcher_is_the_zygote_on_linux_and_can_be_overridden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(LAUNCHER_ENV, raising=False)
    assert default_launcher() == "zygote"
    assert ProcessOptions().launcher == "zygote"
    monkeypatch.setenv(LAUNCHER_ENV, "spawn")
    assert ProcessOptions().launcher == "spawn"
    with pytest.raises(ValueError, match="launcher must be one of zygote, spawn"):
        ProcessOptions(launcher="exec")


async def test_many_plugins_at_once_are_distinct_processes(
    run_plugin: RunPlugin, ask: Ask, zygote: Zygote
) -> None:
    names = [f"intro_{n}" for n in range(16)]
    processes = await asyncio.gather(*(run_plugin(name) for name in names))
    assert len({p.pid for p in processes}) == len(names)
    assert sorted(zygote_children(zygote)) == sorted(p.pid for p in processes)
    values = [(await ask(name, "random"))["value"] for name in names]
    assert len(set(values)) == len(names)  # `random` reseeded in every child


# ---------------------------------------------------------------------------- same process as spawn


async def test_the_process_is_set_up_exactly_as_a_spawned_one(
    run_plugin: RunPlugin, ask: Ask, tmp_path: Path
) -> None:
    seen = {}
    for launcher in LAUNCHERS:
        process = await run_plugin("introspect", launcher, data_dir=tmp_path / "same")
        seen[launcher] = await ask("introspect", "describe")
        assert seen[launcher]["sid"] == seen[launcher]["pgid"] == process.pid  # own session and group
        await process.stop()
    forked, spawned = seen["zygote"], seen["spawn"]
    same = ("argv", "path0", "path", "cwd", "fds", "environ", "stdout", "stderr", "stdin", "main")
    for key in (*same, "sigpipe", "sighup"):
        assert forked[key] == spawned[key], key
    assert forked["argv"] == [str(INTROSPECT)]
    assert forked["path0"] == str(INTROSPECT.parent)
    assert forked["fds"] == [0, 1, 2, 3, 4, 5, 6, 7]  # nothing of the zygote's leaked in
    assert forked["dont_write_bytecode"] is spawned["dont_write_bytecode"] is True
    assert forked["host_modules"] == spawned["host_modules"] == []  # no psutil, no config, no runner
    assert forked["threads"] == 1


# ---------------------------------------------------------------------------- exits


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize(
    ("fault", "returncode", "described"),
    [
        (("exit", "3"), 3, "exit code 3"),
        (("segv",), -signal.SIGSEGV, "killed by SIGSEGV"),
        ((), -signal.SIGKILL, "killed by SIGKILL"),
    ],
    ids=["exit-3", "sigsegv", "sigkill"],
)
async def test_exit_codes_are_identical(
    run_plugin: RunPlugin, bus, launcher: str, fault: tuple[str, ...], returncode: int, described: str
) -> None:
    process = await run_plugin("introspect", launcher)
    exits: list[int] = []
    process.add_exit_callback(exits.append)
    if fault:
        await bus.publish(Subjects.plugin_command("introspect", "execute"), {"args": list(fault)}, "test")
    else:
        process.kill()
    assert await asyncio.wait_for(process.wait(), 10) == returncode
    assert process.returncode == returncode and exits == [returncode]
    assert process.last_exit == described
    assert not process.is_running() and process.get_stats()["running"] is False
    assert not psutil.pid_exists(process.pid)


async def test_start_failures_read_the_same(run_plugin: RunPlugin) -> None:
    broken = ROOT / "tests" / "plugins" / "fixtures" / "import_error_plugin.py"
    messages = {}
    for launcher in LAUNCHERS:
        with pytest.raises(PluginStartError) as failure:
            await run_plugin("importerror", launcher, path=broken)
        messages[launcher] = str(failure.value)
    for message in messages.values():
        assert "this plugin needs the 'unobtainium' package" in message


async def test_kill_tree_and_stats_work_on_a_zygote_child(run_plugin: RunPlugin) -> None:
    process = await run_plugin("faulty", path=ROOT / "tests" / "supervisor" / "fixtures" / "faulty_plugin.py")
    stats = process.get_stats()
    assert stats["running"] and stats["num_threads"] == 1 and stats["num_fds"] >= 7
    process.kill_tree()
    assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL


# ---------------------------------------------------------------------------- the zygote's death


async def test_zygote_death_kills_its_plugins_and_the_next_spawn_restarts_it(
    run_plugin: RunPlugin, ask: Ask, zygote: Zygote
) -> None:
    first, second = await run_plugin("intro_a"), await run_plugin("intro_b")
    old = zygote.pid
    assert old is not None and zygote.starts == 1
    os.kill(old, signal.SIGKILL)
    for process in (first, second):
        assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL
        assert process.last_exit == "killed by SIGKILL"
        assert await wait_pid_gone(process.pid, 10)
    assert await wait_pid_gone(old, 10)

    again = await run_plugin("intro_c")
    assert zygote.starts == 2 and zygote.pid not in (None, old)
    assert (await ask("intro_c", "describe"))["ppid"] == zygote.pid
    await first.start()  # the old runner restarts on the new zygote too
    assert (await ask("intro_a", "describe"))["ppid"] == zygote.pid
    assert again.is_running()


async def test_a_signal_to_the_whole_group_leaves_the_graceful_stop_to_the_host(
    run_plugin: RunPlugin, ask: Ask, zygote: Zygote
) -> None:
    process = await run_plugin("introspect")
    assert zygote.pid is not None
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # what a service manager sends everyone
        os.kill(zygote.pid, sig)
    assert (await ask("introspect", "describe"))["ppid"] == zygote.pid  # both still there
    await run_plugin("intro_b")
    assert zygote.starts == 1  # the same zygote forked it: it ignored all three
    assert await process.stop() == 0  # and the plugin stops as it should: cleanly, on SIGTERM


async def test_stopping_the_zygote_stops_its_plugins(nats_url: str, tmp_path: Path) -> None:
    zygote = Zygote()
    process = PluginProcess(
        "introspect",
        INTROSPECT,
        nats_url,
        options=ProcessOptions(data_dir=tmp_path, launcher="zygote", zygote=zygote),
    )
    await process.start()
    zygote_pid = zygote.pid
    assert zygote_pid is not None
    await zygote.aclose()
    assert await wait_pid_gone(zygote_pid, 10)
    assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL
    with pytest.raises(PluginStartError, match="could not be spawned: this zygote was closed"):
        await process.start()


# ---------------------------------------------------------------------------- isolation


async def test_secrets_never_cross_between_host_zygote_and_plugins(
    run_plugin: RunPlugin, ask: Ask, zygote: Zygote, monkeypatch: pytest.MonkeyPatch
) -> None:
    host_secret = f"host-{uuid.uuid4().hex}"
    a_secret = f"plugin-a-{uuid.uuid4().hex}"
    monkeypatch.setenv("ROSEY_TEST_HOST_SECRET", host_secret)  # before the zygote starts

    a = await run_plugin("intro_a", extra_env={"INTRO_A_CREDENTIAL": a_secret})
    b = await run_plugin("intro_b")
    a_env = (await ask("intro_a", "describe"))["environ"]
    assert a_env["INTRO_A_CREDENTIAL"] == a_secret  # A has its own credential ...
    assert "ROSEY_TEST_HOST_SECRET" not in a_env

    b_env = (await ask("intro_b", "describe"))["environ"]
    b_proc_self = await ask("intro_b", "environ", "self")
    b_proc_a = await ask("intro_b", "environ", a.pid)  # same uid, no sandbox: readable
    for seen in (b_env, b_proc_self["value"], b_proc_a["value"]):
        text = repr(seen)
        assert a_secret not in text and host_secret not in text  # ... and B sees none of it

    assert zygote.pid is not None
    template = read_environ(zygote.pid)
    assert host_secret not in template and a_secret not in template
    for per_plugin in ("HOME=", "NATS_URL=", "ROSEY_PLUGIN_NAME=", "ROSEY_DATA_DIR="):
        assert f"\0{per_plugin}" not in f"\0{template}"

    try:
        assert memory_contains(a.pid, a_secret.encode())  # the scan does find a secret where it is
    except PermissionError:
        pytest.skip("cannot read other processes' memory here (ptrace restrictions)")
    assert not memory_contains(zygote.pid, a_secret.encode())  # the request was wiped after the fork
    assert not memory_contains(b.pid, a_secret.encode())
    assert not memory_contains(zygote.pid, host_secret.encode())


def test_the_template_environment_is_the_plugins_minus_everything_per_plugin() -> None:
    host = {"PATH": "/bin", "LANG": "C.UTF-8", "TZ": "UTC", "AWS_SECRET_ACCESS_KEY": "x", "NATS_TOKEN": "t"}
    env = template_environment(host)
    assert env["PATH"] == "/bin" and env["TZ"] == "UTC" and env["PYTHONUNBUFFERED"] == "1"
    unwanted = {"AWS_SECRET_ACCESS_KEY", "NATS_TOKEN", "HOME", "TMPDIR", "NATS_URL", "ROSEY_PLUGIN_NAME"}
    assert not unwanted & set(env)


async def test_the_zygote_holds_one_thread_and_no_leftover_descriptors(
    run_plugin: RunPlugin, zygote: Zygote
) -> None:
    processes = [await run_plugin(f"intro_{n}") for n in range(3)]
    assert zygote.pid is not None
    template = psutil.Process(zygote.pid)
    assert template.num_threads() == 1
    assert template.cwd() == "/"
    assert template.cmdline()[1:3] == ["-s", "-P"]
    assert template.num_fds() == 4 + len(processes)  # stdio, its socket, one pidfd per live child
    for process in processes:
        await process.stop()
    assert template.num_fds() == 4


@pytest.mark.skipif(landlock.abi_version()[0] < 6, reason="needs Landlock ABI 6 (fs, TCP, scoping)")
@pytest.mark.skipif(not seccomp.mode_filter_available()[0], reason="needs seccomp filters")
@pytest.mark.parametrize("launcher", LAUNCHERS)
async def test_the_sandbox_is_applied_in_the_child(
    run_plugin: RunPlugin, ask: Ask, zygote: Zygote, nats_server: NatsServer, tmp_path: Path, launcher: str
) -> None:
    data_dir = tmp_path / "sandboxed"
    assert nats_server.port is not None
    policy = SandboxPolicy.for_plugin(plugin_file=INTROSPECT, data_dir=data_dir, nats_port=nats_server.port)
    await run_plugin("introspect", launcher, data_dir=data_dir, sandbox=policy)
    facts = await ask("introspect", "describe")
    assert "landlock" in facts["sandbox"] and "seccomp" in facts["sandbox"]
    forked = await ask("introspect", "fork")
    assert (forked["outcome"], forked["errno"]) == ("denied", "EPERM")
    passwd = await ask("introspect", "read", "/etc/passwd")
    assert refused(passwd), passwd
    parent = facts["ppid"]
    assert parent == (zygote.pid if launcher == "zygote" else os.getpid())
    signalled = await ask("introspect", "kill", parent)  # Landlock scopes signals to its own domain
    assert (signalled["outcome"], signalled["errno"]) == ("denied", "EPERM")
    environ = await ask("introspect", "environ", parent)
    assert environ["outcome"] == "denied"


# ---------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("launcher", LAUNCHERS)
async def test_a_cancelled_start_leaves_no_process(
    run_plugin: RunPlugin, nats_url: str, tmp_path: Path, zygote: Zygote, launcher: str
) -> None:
    pids: list[int] = []
    for yields in range(12):
        process = PluginProcess(
            f"cancel_{yields}",
            INTROSPECT,
            nats_url,
            options=ProcessOptions(data_dir=tmp_path / str(yields), launcher=launcher, zygote=zygote),
        )
        task = asyncio.create_task(process.start())
        for _ in range(yields):
            await asyncio.sleep(0)  # a yield to the loop, not a timer: cancel at every step of start()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            await process.stop()
        if process.pid is not None:
            pids.append(process.pid)
    # Answers come in order: once this spawn is answered, every cancelled one was seen too.
    final = await run_plugin("introspect", launcher)
    if launcher == "zygote":
        pids.extend(pid for pid in zygote_children(zygote) if pid != final.pid)
    for pid in pids:
        assert await wait_pid_gone(pid, 10), pid


async def test_an_oversized_request_fails_that_start_only(run_plugin: RunPlugin, ask: Ask) -> None:
    with pytest.raises(PluginStartError, match="exceeds"):
        await run_plugin("intro_big", extra_env={"BIG": "x" * 200_000})
    await run_plugin("introspect")
    assert (await ask("introspect", "describe"))["threads"] == 1


async def test_runners_without_a_zygote_share_one_per_event_loop(nats_url: str, tmp_path: Path) -> None:
    shared = shared_zygote()
    assert shared_zygote() is shared
    options = ProcessOptions(data_dir=tmp_path, launcher="zygote")
    process = PluginProcess("echo", ECHO, nats_url, options=options)
    await process.start()
    assert psutil.Process(process.pid).ppid() == shared.pid
    assert await process.stop() == 0


async def test_a_zygote_that_cannot_start_fails_the_spawn_with_the_reason(tmp_path: Path) -> None:
    broken = Zygote(python_executable="/bin/false")  # exits at once, before its hello
    try:
        with pytest.raises(ZygoteError, match="exited before starting any plugin"):
            await broken.spawn(["--path", str(INTROSPECT)], env={}, cwd=tmp_path)
        with pytest.raises(ZygoteError):  # and again: every spawn tries a fresh zygote
            await broken.spawn(["--path", str(INTROSPECT)], env={}, cwd=tmp_path)
        assert broken.starts == 2
    finally:
        await broken.aclose()
