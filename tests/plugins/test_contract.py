"""The host <-> plugin-process contract: environment names, exit codes, the ping reply, the launch record."""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.rosey.broker.nats_server import NatsServer
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import PluginStartError
from bot.rosey.plugins.contract import (
    READY_MESSAGE,
    Env,
    ExitCode,
    Launch,
    LaunchReport,
    PingReply,
    current_launch,
    mark_plugin_started,
    record_launch,
    watch_ready,
)
from bot.rosey.plugins.plugin_runner import Launcher, PluginProcess, ProcessOptions
from bot.rosey.plugins.process.environment import PASSTHROUGH, minimal_environment
from bot.rosey.plugins.process.zygote import template_environment
from bot.rosey.plugins.sandbox import SandboxPolicy, landlock, seccomp

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
ECHO = ROOT / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
CONTRACT_NAMES = {str(name) for name in Env}
WIRE_KEYS = {
    "commands",
    "errors",
    "in_flight",
    "latency_ms_p50",
    "latency_ms_p99",
    "permission_violations",
    "malformed",
    "sandbox",
}

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------- the ping reply


def test_ping_reply_round_trips_through_json() -> None:
    reply = PingReply(
        commands=12,
        errors=1,
        in_flight=2,
        latency_ms_p50=0.8,
        latency_ms_p99=4.25,
        permission_violations=3,
        malformed=4,
        sandbox=("rlimits", "landlock-fs", "seccomp"),
    )
    wire = json.loads(json.dumps(reply.to_wire()))
    assert set(wire) == WIRE_KEYS
    assert wire["sandbox"] == "rlimits,landlock-fs,seccomp"  # one string, as `rosey status` shows it
    assert PingReply.from_wire(wire) == reply
    unsandboxed = PingReply(commands=1)
    assert unsandboxed.to_wire()["sandbox"] is None
    assert PingReply.from_wire(json.loads(json.dumps(unsandboxed.to_wire()))) == unsandboxed
    nothing_applied = PingReply(sandbox=())
    assert nothing_applied.to_wire()["sandbox"] == ""
    assert PingReply.from_wire(nothing_applied.to_wire()) == nothing_applied


@pytest.mark.parametrize(
    "wire",
    [
        None,
        "pong",
        42,
        ["commands", 1],
        {},
        {"unknown": "key", "another": [1, 2, 3]},
        {"commands": "12", "errors": None, "in_flight": [1], "malformed": {"a": 1}},
        {"commands": True, "errors": False, "permission_violations": 1.5, "in_flight": -3},
        {"commands": 10**400, "malformed": 2**63},
        {"latency_ms_p50": "0.5", "latency_ms_p99": True},
        {"latency_ms_p50": math.nan, "latency_ms_p99": math.inf},
        {"latency_ms_p50": -1.0, "latency_ms_p99": 10**400},
        {"sandbox": 7},
        {"sandbox": {"seccomp": True}},
        {"sandbox": "x" * 100_000},
        {"sandbox": ["seccomp"] * 1000},
    ],
)
def test_ping_reply_from_hostile_wire_reads_as_defaults(wire: object) -> None:
    assert PingReply.from_wire(wire) == PingReply()


def test_ping_reply_keeps_what_is_sane_and_drops_the_rest() -> None:
    huge = {f"key{i}": i for i in range(100_000)}  # a plugin may send anything; only eight keys are read
    reply = PingReply.from_wire(
        {
            **huge,
            "commands": 5,
            "errors": "5",
            "latency_ms_p50": 3,
            "latency_ms_p99": math.nan,
            "sandbox": [" rlimits ", 3, "", "x" * 65, "seccomp", None],
        }
    )
    assert reply == PingReply(commands=5, latency_ms_p50=3.0, sandbox=("rlimits", "seccomp"))
    assert PingReply.from_wire({"sandbox": "rlimits,,seccomp,"}).sandbox == ("rlimits", "seccomp")


@pytest.mark.parametrize(
    "fields",
    [{"commands": -1}, {"errors": True}, {"in_flight": 1.0}, {"latency_ms_p50": math.inf}],
)
def test_ping_reply_refuses_impossible_values(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="PingReply"):
        PingReply(**fields)


async def test_the_sdk_answers_the_ping_with_the_contract_schema(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    process = PluginProcess("echo", ECHO, nats_server.url, options=ProcessOptions(data_dir=tmp_path / "echo"))
    await process.start()
    try:
        async with EventBus(nats_server.url, name="contract-test") as bus:
            pong = await bus.request(Subjects.control("echo", "ping"), {}, "contract-test", timeout=5)
    finally:
        await process.stop()
    assert set(pong.data) == WIRE_KEYS
    reply = PingReply.from_wire(pong.data)
    assert reply.to_wire() == pong.data  # nothing the SDK sends is lost or reshaped by the host's reading
    assert reply.sandbox is None  # started without a sandbox


# ---------------------------------------------------------------------- environment names


def _host_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "LC_CTYPE": "C.UTF-8",
        "TZ": "UTC",
        "ROSEY_TEST_GRANTED": "yes",
        "ROSEY_TEST_SECRET": "no",
        "AWS_SECRET_ACCESS_KEY": "no",
    }.items():
        monkeypatch.setenv(name, value)


def test_minimal_environment_uses_contract_names_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _host_environ(monkeypatch)
    env = minimal_environment(
        plugin_name="p",
        data_dir=tmp_path,
        nats_url="nats://127.0.0.1:4222",
        nats_token="token",
        nats_user="plugin_p",
        nats_password="secret",
        granted=("ROSEY_TEST_GRANTED",),
    )
    assert set(env) <= CONTRACT_NAMES | set(PASSTHROUGH) | {"ROSEY_TEST_GRANTED"}
    assert {Env.NATS_TOKEN, Env.NATS_USER, Env.NATS_PASSWORD, Env.PLUGIN_NAME, Env.DATA_DIR} <= set(env)
    assert set(template_environment()) <= CONTRACT_NAMES | set(PASSTHROUGH)


@pytest.mark.parametrize("parent_pid", [None, 4321], ids=["zygote-child", "spawned"])
def test_every_variable_the_runner_sets_is_a_contract_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parent_pid: int | None
) -> None:
    _host_environ(monkeypatch)
    monkeypatch.setenv(Env.NATS_TOKEN, "token")
    options = ProcessOptions(
        data_dir=tmp_path / "data",
        nats_user="plugin_p",
        nats_password="secret",
        env_grants=("ROSEY_TEST_GRANTED",),
        extra_env={Env.MAX_CONCURRENCY: "4"},  # what the app passes
        sandbox=SandboxPolicy.for_plugin(plugin_file=ECHO, data_dir=tmp_path / "data", nats_port=4222),
    )
    runner = PluginProcess("p", ECHO, "nats://127.0.0.1:4222", options=options)
    env = runner._environment(3, parent_pid=parent_pid)
    granted = {"ROSEY_TEST_GRANTED"}
    assert set(env) <= CONTRACT_NAMES | set(PASSTHROUGH) | granted
    assert "ROSEY_TEST_SECRET" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    handshake = {Env.READY_FD, Env.SANDBOX, Env.MAX_CONCURRENCY} | ({Env.PARENT_PID} if parent_pid else set())
    assert handshake <= set(env)
    assert (Env.PARENT_PID in env) == (parent_pid is not None)


def test_contract_names_are_distinct_and_exit_codes_are_fixed() -> None:
    assert len(CONTRACT_NAMES) == len(Env)
    # The numbers are the contract (the host reports them; sysexits for the last two).
    assert [int(code) for code in ExitCode] == [0, 1, 2, 71, 78]


def test_the_contract_imports_nothing_host_side() -> None:
    code = (
        "import json, sys, bot.rosey.plugins.contract, bot.rosey.linux\n"
        "watched = ('asyncio', 'psutil', 'nats')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('bot') or m in watched)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout) == [
        "bot",
        "bot.rosey",
        "bot.rosey.linux",
        "bot.rosey.plugins",
        "bot.rosey.plugins.contract",
    ]


# ---------------------------------------------------------------------- the launcher's report


def test_launch_report_round_trips_as_one_line() -> None:
    for report in (LaunchReport(), LaunchReport(sandbox=()), LaunchReport(sandbox=("rlimits", "seccomp"))):
        line = report.to_line()
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert LaunchReport.from_line(line) == report


@pytest.mark.parametrize(
    "line",
    [
        b"READY\n",
        b"LAUNCHED \n",
        b"LAUNCHED {\n",
        b'LAUNCHED {"sandbox": ["rlimits"]}',  # no newline: not a whole line
        b'LAUNCHED ["rlimits"]\n',
        b'LAUNCHED {"sandbox": 7}\n',
        b'LAUNCHED {"sandbox": "' + b"x" * 5000 + b'"}\n',
        b'SANDBOX {"sandbox": ["rlimits"]}\n',
    ],
)
def test_launch_report_from_anything_else_is_none(line: bytes) -> None:
    assert LaunchReport.from_line(line) is None


async def watched(*writes: bytes) -> tuple[bool, list[LaunchReport]]:
    """Feed ``writes`` through a real pipe to :func:`watch_ready`; its answer and the reports seen."""
    read_end, write_end = os.pipe()
    reports: list[LaunchReport] = []
    answer = watch_ready(read_end, on_launch=reports.append)
    try:
        for data in writes:
            os.write(write_end, data)
            await asyncio.sleep(0)  # one write per read where it can be: lines split across reads
        os.close(write_end)
        write_end = -1
        return await asyncio.wait_for(answer, 5), reports
    finally:
        answer.cancel()
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


async def test_the_runner_takes_the_launch_report_from_the_first_line_only() -> None:
    real = LaunchReport(sandbox=("rlimits", "seccomp")).to_line()
    forged = LaunchReport(sandbox=("rlimits", "seccomp", "forged")).to_line()
    # The launcher's line, then the plugin's forgeries, then READY: ready, with the real report.
    assert await watched(real, forged, b"SANDBOX forged\n", forged[:5], forged[5:], READY_MESSAGE) == (
        True,
        [LaunchReport(sandbox=("rlimits", "seccomp"))],
    )
    assert await watched(real + forged + READY_MESSAGE) == (
        True,
        [LaunchReport(sandbox=("rlimits", "seccomp"))],
    )
    # No launcher line first (a process not started by the launcher): a later report is ignored.
    assert await watched(b"hello\n", forged, READY_MESSAGE) == (True, [])
    assert await watched(READY_MESSAGE) == (True, [])
    # Closed without READY, or an endless line: not ready.
    assert await watched(real) == (False, [LaunchReport(sandbox=("rlimits", "seccomp"))])
    assert await watched(b"x" * 10_000) == (False, [])


# ---------------------------------------------------------------------- the launch record


def test_the_launch_record_belongs_to_its_context() -> None:
    def launched() -> tuple[Launch, Launch]:
        assert current_launch() == Launch()
        record_launch(Launch(sandbox=("rlimits", "seccomp")))
        mark_plugin_started()

        async def read() -> Launch:
            return current_launch()

        async def seen_by_a_task() -> Launch:
            return await asyncio.create_task(read())

        # asyncio.run() copies this context into its tasks: what the SDK's ping handler relies on.
        return current_launch(), asyncio.run(seen_by_a_task())

    recorded, in_task = contextvars.copy_context().run(launched)
    assert recorded == in_task == Launch(sandbox=("rlimits", "seccomp"), plugin_started=True)
    assert current_launch() == Launch()  # nothing leaked into the caller's context


@pytest.mark.no_nats  # the fixtures never connect
@pytest.mark.parametrize("launcher", list(Launcher))
@pytest.mark.parametrize("fixture", ["launch_record_plugin.py", "launch_record_no_main_plugin.py"])
async def test_a_plugin_file_is_started_exactly_once(
    tmp_path: Path, launcher: Launcher, fixture: str
) -> None:
    options = ProcessOptions(data_dir=tmp_path / "data", launcher=launcher, log_output=False)
    process = PluginProcess("recorder", FIXTURES / fixture, options=options)
    assert process.launcher is launcher
    await process.start()
    # A second start of the plugin class would print again and then wait for a SIGTERM that never
    # comes: the stop would end in SIGKILL instead of exit 0.
    assert process.launch_report == LaunchReport(sandbox=None)  # no sandbox asked for, and said so
    assert process.launched_by is launcher
    assert await process.stop(timeout=10) == ExitCode.OK
    stdout = (await process.get_output(20))["stdout"].splitlines()
    assert stdout == ["started plugin_started=True sandbox=None"]


@pytest.mark.skipif(landlock.abi_version()[0] < 6, reason="needs Landlock ABI 6 (fs, TCP, scoping)")
@pytest.mark.skipif(not seccomp.mode_filter_available()[0], reason="needs seccomp filters")
@pytest.mark.no_nats
@pytest.mark.parametrize("launcher", list(Launcher))
async def test_the_launch_record_holds_the_applied_sandbox(tmp_path: Path, launcher: Launcher) -> None:
    plugin = FIXTURES / "launch_record_plugin.py"
    data_dir = tmp_path / "data"
    policy = SandboxPolicy.for_plugin(plugin_file=plugin, data_dir=data_dir, nats_port=4222)
    options = ProcessOptions(data_dir=data_dir, launcher=launcher, sandbox=policy, log_output=False)
    process = PluginProcess("recorder", plugin, options=options)
    await process.start()
    report = process.launch_report
    assert await process.stop(timeout=10) == ExitCode.OK
    (line,) = (await process.get_output(20))["stdout"].splitlines()
    prefix = "started plugin_started=True sandbox="
    assert line.startswith(prefix)
    layers = set(line.removeprefix(prefix).split(","))
    assert {"rlimits", "no_new_privs", "landlock-fs", "landlock-net", "seccomp"} <= layers
    # The runner heard the same layers from the launcher, on the readiness pipe.
    assert report is not None and report.sandbox is not None and set(report.sandbox) == layers


@pytest.mark.no_nats
async def test_a_file_with_two_plugin_classes_and_no_main_is_a_usage_error(tmp_path: Path) -> None:
    process = PluginProcess(
        "first", FIXTURES / "two_plugins_no_main.py", options=ProcessOptions(data_dir=tmp_path / "data")
    )
    with pytest.raises(PluginStartError, match=r"defines 2 plugin classes \(FirstPlugin, SecondPlugin\)"):
        await process.start()
    assert process.returncode == ExitCode.USAGE
