"""CoreRouter against a real nats-server and real plugin processes.

Waiting is always on something that happens (a reply, a process exit, a task), bounded by
``asyncio.wait_for``; the only deliberate waits are the router's own command timeouts.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.adapters.console import ConsoleAdapter
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.services.router import CommandOutcome, CoreRouter, OutcomeKind, RouterConfig

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
FAULTY = ROOT / "tests" / "plugins" / "fixtures" / "faulty_plugin.py"
FAULTY_ERROR = "the flux capacitor is broken"

Launch = Callable[[str, Path], Awaitable[PluginProcess]]


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[EventBus]:
    event_bus = EventBus(nats_url, name="test-router")
    await event_bus.connect()
    yield event_bus
    await event_bus.disconnect()


@pytest.fixture
async def router(bus: EventBus) -> AsyncIterator[CoreRouter]:
    core_router = CoreRouter(bus)
    await core_router.start()
    yield core_router
    await core_router.stop()


@pytest.fixture
async def launch(nats_url: str, tmp_path: Path) -> AsyncIterator[Launch]:
    """Start plugin processes for the test; all of them are stopped afterwards."""
    runners: list[PluginProcess] = []

    async def start(name: str, path: Path) -> PluginProcess:
        runner = PluginProcess(
            name, path, nats_url=nats_url, options=ProcessOptions(data_dir=tmp_path / name)
        )
        runners.append(runner)
        await runner.start()
        return runner

    yield start
    for runner in runners:
        await runner.stop()


async def collect(bus: EventBus, subject: str) -> asyncio.Queue[Event]:
    queue: asyncio.Queue[Event] = asyncio.Queue()

    async def put(event: Event) -> None:
        queue.put_nowait(event)

    await bus.subscribe(subject, put)
    await bus.flush()
    return queue


# ---------------------------------------------------------------------- parsing and config


@pytest.mark.no_nats
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!echo hi there", ("echo", ["hi", "there"])),
        ('!echo "hi there" you', ("echo", ["hi there", "you"])),
        ("!echo don't stop", ("echo", ["don't", "stop"])),  # unbalanced quote: plain split
        ("  !Echo   a  ", ("echo", ["a"])),
        ("!echo", ("echo", [])),
        ("!echo\tx", ("echo", ["x"])),
        (r"!echo C:\temp #tag", ("echo", [r"C:\temp", "#tag"])),  # no escapes, no comments
        ("!Bad-Name x", ("bad-name", ["x"])),  # parses; execute() answers "unknown command"
        ("hello", None),
        ("", None),
        ("!", None),
        ("! echo", None),
        ("!!!", None),
        ("say !echo", None),
    ],
)
def test_parse(text: str, expected: tuple[str, list[str]] | None) -> None:
    assert CoreRouter(EventBus()).parse(text) == expected


@pytest.mark.no_nats
def test_parse_with_custom_prefix() -> None:
    router = CoreRouter(EventBus(), RouterConfig(prefix="rosey:"))
    assert router.parse("rosey:echo a b") == ("echo", ["a", "b"])
    assert router.parse("!echo a") is None


@pytest.mark.no_nats
@pytest.mark.parametrize(
    "kwargs",
    [
        {"prefix": ""},
        {"prefix": "! "},
        {"command_timeout": 0},
        {"timeouts": {"Bad-Name": 1.0}},
        {"timeouts": {"echo": -1.0}},
        {"max_concurrent": 0},
    ],
)
def test_router_config_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RouterConfig(**kwargs)


@pytest.mark.no_nats
def test_router_config_timeouts() -> None:
    timeouts = {"slow": 30.0}
    config = RouterConfig(command_timeout=5.0, timeouts=timeouts)
    timeouts["slow"] = 1.0  # the frozen config keeps its own copy
    assert config.timeout_for("slow") == 30.0
    assert config.timeout_for("echo") == 5.0
    with pytest.raises(TypeError):
        config.timeouts["echo"] = 1.0  # type: ignore[index]


# ---------------------------------------------------------------------- outcomes


async def test_result_path(router: CoreRouter, launch: Launch) -> None:
    await launch("echo", ECHO)
    outcome = await router.execute("echo", ["hi", "there"])
    assert outcome.kind is OutcomeKind.RESULT and outcome.ok
    assert outcome.message == "🔊 Echo #1: hi there"
    assert outcome.plugin == "echo"
    assert outcome.data["count"] == 1
    assert outcome.data["correlation_id"] == outcome.correlation_id
    assert 0 < outcome.elapsed < 5

    again = await router.dispatch("!echo again")
    assert again is not None and again.message == "🔊 Echo #2: again"
    assert again.correlation_id != outcome.correlation_id
    assert await router.dispatch("just chatting") is None


async def test_plugin_error_then_keeps_serving(router: CoreRouter, launch: Launch) -> None:
    await launch("faulty", FAULTY)
    failed = await router.execute("faulty", ["raise"])
    assert failed.kind is OutcomeKind.ERROR and not failed.ok
    assert failed.message == f"⚠️ faulty: {FAULTY_ERROR}"

    user = {"username": "alice"}
    served = await router.execute("faulty", ["ok", "x"], user=user, channel="lobby")
    assert served.kind is OutcomeKind.RESULT
    assert served.data["seen"] == {"args": ["ok", "x"], "user": user, "channel": "lobby"}


async def test_unknown_plugin_without_known_list(router: CoreRouter) -> None:
    outcome = await router.execute("nosuch", [], timeout=10)
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert outcome.message == "unknown command '!nosuch'"
    assert outcome.elapsed < 2  # "no responders" comes back at once, not at the timeout


async def test_unknown_and_unavailable_with_known_list(bus: EventBus) -> None:
    router = CoreRouter(bus, known_plugins=lambda: {"trivia", "echo"})
    configured = await router.execute("trivia", [], timeout=10)
    assert configured.kind is OutcomeKind.UNAVAILABLE
    assert configured.message == "plugin 'trivia' is not running right now"
    assert configured.elapsed < 2

    unknown = await router.execute("nosuch", [], timeout=10)
    assert unknown.kind is OutcomeKind.UNKNOWN
    assert unknown.message == "unknown command '!nosuch' — try one of: echo, trivia"
    assert unknown.elapsed < 2


async def test_invalid_plugin_name_is_unknown(router: CoreRouter) -> None:
    outcome = await router.execute("Bad-Name", ["x"])
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert "'!Bad-Name'" in outcome.message


async def test_timeout(router: CoreRouter, launch: Launch) -> None:
    await launch("faulty", FAULTY)
    outcome = await router.execute("faulty", ["silent"], timeout=0.5)
    assert outcome.kind is OutcomeKind.TIMEOUT
    assert outcome.message == "plugin 'faulty' did not answer within 0.5 s"
    assert 0.5 <= outcome.elapsed < 5


async def test_per_plugin_timeout_from_config(bus: EventBus, launch: Launch) -> None:
    await launch("faulty", FAULTY)
    router = CoreRouter(bus, RouterConfig(command_timeout=30, timeouts={"faulty": 0.3}))
    outcome = await router.execute("faulty", ["silent"])
    assert outcome.kind is OutcomeKind.TIMEOUT
    assert "0.3 s" in outcome.message


async def test_crash_resolves_in_flight_command_at_once(
    router: CoreRouter, bus: EventBus, launch: Launch
) -> None:
    faulty = await launch("faulty", FAULTY)
    command = asyncio.create_task(router.execute("faulty", ["die"], timeout=30))
    returncode = await asyncio.wait_for(faulty.wait(), 10)
    assert returncode == 3
    # What the supervisor does in production when it sees the process die:
    await bus.publish(Subjects.lifecycle("faulty", "crashed"), {"reason": faulty.last_exit}, "test")

    outcome = await asyncio.wait_for(command, 5)
    assert outcome.kind is OutcomeKind.CRASHED
    assert outcome.message == "plugin 'faulty' crashed while handling your command (exit code 3)"
    assert outcome.data == {"reason": "exit code 3"}
    assert outcome.elapsed < 10  # nowhere near the 30 s timeout


async def test_crash_of_another_plugin_does_not_touch_a_command(
    router: CoreRouter, bus: EventBus, launch: Launch
) -> None:
    await launch("faulty", FAULTY)
    command = asyncio.create_task(router.execute("faulty", ["silent"], timeout=1.0))
    await bus.publish(Subjects.lifecycle("echo", "crashed"), {"reason": "killed by SIGKILL"}, "test")
    outcome = await asyncio.wait_for(command, 10)
    assert outcome.kind is OutcomeKind.TIMEOUT


# ---------------------------------------------------------------------- chat flow


def message(text: str, *, platform: str = "test", channel: str = "lobby") -> dict[str, Any]:
    return {"text": text, "user": {"username": "alice"}, "channel": channel, "platform": platform}


async def test_chat_flow_end_to_end(router: CoreRouter, bus: EventBus, launch: Launch) -> None:
    await launch("echo", ECHO)
    replies = await collect(bus, Subjects.chat_send("test"))

    await bus.publish(Subjects.event("message"), message("hello everyone"), "test-adapter")
    sent = await bus.publish(Subjects.event("message"), message("!echo hi"), "test-adapter")
    reply = await asyncio.wait_for(replies.get(), 10)
    assert reply.data == {
        "text": "🔊 Echo #1: hi",
        "channel": "lobby",
        "in_reply_to": sent.id,
        "kind": "result",
    }

    unknown = await bus.publish(Subjects.event("message"), message("!nosuch"), "test-adapter")
    reply = await asyncio.wait_for(replies.get(), 10)
    assert reply.data["in_reply_to"] == unknown.id
    assert reply.data["kind"] == "unknown"
    assert replies.empty()  # "hello everyone" was chat, not a command: no reply


async def test_router_without_chat_ignores_chat(bus: EventBus, launch: Launch) -> None:
    await launch("echo", ECHO)
    one_shot = CoreRouter(bus)
    await one_shot.start(chat=False)  # as `rosey send` does: commands yes, chat no
    chatty = CoreRouter(bus)
    await chatty.start()
    try:
        replies = await collect(bus, Subjects.chat_send("test"))
        sent = await bus.publish(Subjects.event("message"), message("!echo once"), "test-adapter")
        reply = await asyncio.wait_for(replies.get(), 10)
        assert reply.data["in_reply_to"] == sent.id
        # Echo counts its commands: had the chat=False router answered too, this would be #3.
        assert (await one_shot.execute("echo", ["direct"])).message == "🔊 Echo #2: direct"
    finally:
        await chatty.stop()
        await one_shot.stop()


async def test_chat_commands_run_concurrently(bus: EventBus, launch: Launch) -> None:
    await launch("echo", ECHO)
    await launch("faulty", FAULTY)
    router = CoreRouter(bus, RouterConfig(command_timeout=30))
    await router.start()
    try:
        replies = await collect(bus, Subjects.chat_send("test"))
        await bus.publish(Subjects.event("message"), message("!faulty silent"), "test-adapter")
        fast = await bus.publish(Subjects.event("message"), message("!echo still here"), "test-adapter")
        reply = await asyncio.wait_for(replies.get(), 10)  # not held up by the silent plugin
        assert reply.data["in_reply_to"] == fast.id
        assert reply.data["text"] == "🔊 Echo #1: still here"
    finally:
        await router.stop()  # cancels the command still waiting on the silent plugin


@pytest.mark.parametrize("input_kind", ["pipe", "stringio"])
async def test_console_adapter_end_to_end(
    input_kind: str, nats_url: str, bus: EventBus, launch: Launch
) -> None:
    await launch("echo", ECHO)
    router = CoreRouter(bus)
    await router.start()
    adapter_bus = EventBus(nats_url, name="test-console")
    await adapter_bus.connect()
    script = "hello\n\n!echo hi there\n"
    output = io.StringIO()
    read_end: io.BufferedReader | None = None
    try:
        if input_kind == "pipe":  # watched by the event loop
            read_fd, write_fd = os.pipe()
            read_end = os.fdopen(read_fd, "rb")
            os.write(write_fd, script.encode())
            os.close(write_fd)
            adapter = ConsoleAdapter(adapter_bus, input_stream=read_end, output=output)
        else:  # no file descriptor: read by a thread
            adapter = ConsoleAdapter(adapter_bus, input_stream=io.StringIO(script), output=output)
        await asyncio.wait_for(adapter.run(), 15)  # returns at EOF, once the command got its reply
    finally:
        if read_end is not None:
            read_end.close()
        await adapter_bus.disconnect()
        await router.stop()
    assert output.getvalue() == "rosey> 🔊 Echo #1: hi there\n"


async def test_outcome_is_frozen() -> None:
    outcome = CommandOutcome(
        kind=OutcomeKind.RESULT, plugin="x", message="m", correlation_id="c", elapsed=0.1
    )
    assert outcome.ok and outcome.data == {}
    with pytest.raises(AttributeError):
        outcome.message = "changed"  # type: ignore[misc]
