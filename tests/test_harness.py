"""The plugin-author harness (``bot.rosey.testing``): what its docs promise, it does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from bot.rosey.broker.nats_server import NatsServer
from bot.rosey.errors import PluginStartError
from bot.rosey.services.router import OutcomeKind
from bot.rosey.testing import PluginHarness

ROOT = Path(__file__).resolve().parents[1]
ECHO = ROOT / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
FIXTURES = ROOT / "tests" / "plugins" / "fixtures"


async def test_echo(harness: PluginHarness) -> None:
    # The example of the module docstring, word for word (the path is relative to the checkout).
    await harness.start_plugin("echo", "bot/rosey/plugins/examples/echo_plugin.py")
    reply = await harness.command("echo", ["hi"])
    assert reply.message == "🔊 Echo #1: hi"


async def test_seed_docs_plugin(harness: PluginHarness) -> None:
    await harness.start_plugin("myplugin", FIXTURES / "my_plugin.py")
    reply = await harness.command("myplugin", ["test", "args"])
    assert reply.ok
    assert reply.message == "Received: ['test', 'args']"


async def test_plugin_file_without_main_block_starts(harness: PluginHarness) -> None:
    await harness.start_plugin("nomain", FIXTURES / "no_main_plugin.py")
    reply = await harness.command("nomain")
    assert reply.message == "no main block, still here"


async def test_plugin_from_entry_point(harness: PluginHarness) -> None:
    await harness.start_plugin("echo", entry="bot.rosey.plugins.examples.echo_plugin:EchoPlugin")
    reply = await harness.command("echo", ["by", "entry"])
    assert reply.message == "🔊 Echo #1: by entry"


async def test_user_and_channel_reach_the_plugin(harness: PluginHarness) -> None:
    await harness.start_plugin("faulty", FIXTURES / "faulty_plugin.py")
    reply = await harness.command("faulty", ["ok"], user={"username": "bob"}, channel="games")
    assert reply.data["seen"] == {"args": ["ok"], "user": {"username": "bob"}, "channel": "games"}


async def test_unknown_and_stopped_plugins(harness: PluginHarness) -> None:
    runner = await harness.start_plugin("echo", ECHO)
    assert harness.plugins == {"echo": runner}
    never = await harness.command("nosuch")
    assert never.kind is OutcomeKind.UNKNOWN
    assert never.message == "unknown command '!nosuch' — try one of: echo"

    assert await harness.stop_plugin("echo") == 0
    assert harness.plugins == {}
    stopped = await harness.command("echo", ["hi"])
    assert stopped.kind is OutcomeKind.UNAVAILABLE


async def test_starting_the_same_name_twice_is_refused(harness: PluginHarness) -> None:
    await harness.start_plugin("echo", ECHO)
    with pytest.raises(PluginStartError, match="already started"):
        await harness.start_plugin("echo", ECHO)
    assert (await harness.command("echo", ["one"])).message == "🔊 Echo #1: one"


async def test_a_crash_during_a_command_is_reported_at_once(harness: PluginHarness) -> None:
    # The harness plays the supervisor: it announces the unexpected exit, the router fails fast.
    runner = await harness.start_plugin("faulty", FIXTURES / "faulty_plugin.py")
    reply = await asyncio.wait_for(harness.command("faulty", ["die"], timeout=30), 10)
    assert reply.kind is OutcomeKind.CRASHED
    assert reply.message == "plugin 'faulty' crashed while handling your command (exit code 3)"
    assert runner.returncode == 3


async def test_close_leaves_no_process_behind(nats_server: NatsServer, tmp_path: Path) -> None:
    harness = PluginHarness(nats_server.url, state_dir=tmp_path)
    runners = [
        await harness.start_plugin("echo", ECHO),
        await harness.start_plugin("myplugin", FIXTURES / "my_plugin.py"),
    ]
    pids = [runner.pid for runner in runners]
    assert all(pid is not None and psutil.pid_exists(pid) for pid in pids)

    await harness.close()
    for runner in runners:
        assert runner.returncode is not None  # exited and reaped
        assert runner.pid is not None and not psutil.pid_exists(runner.pid)
    assert harness.plugins == {}
    await harness.close()  # twice is fine


async def test_close_runs_even_when_the_test_body_fails(nats_server: NatsServer) -> None:
    with pytest.raises(RuntimeError, match="test body failed"):
        async with PluginHarness(nats_server.url) as harness:
            runner = await harness.start_plugin("echo", ECHO)
            raise RuntimeError("test body failed")
    assert runner.returncode is not None
    assert runner.pid is not None and not psutil.pid_exists(runner.pid)
