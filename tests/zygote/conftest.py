"""Plugin processes forked by a zygote, beside the plain spawn path.

``zygote``: a private :class:`Zygote`, stopped after the test. ``run_plugin(...)``: a ready
:class:`PluginProcess` with either launcher, stopped after the test. ``ask(name, *args)``:
one command over the bus, its result data. ``stack_factory``: the supervisor test stack of
``tests/supervisor``, once per launcher, so its fault matrix runs against both.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import NoResponders
from bot.rosey.plugins.plugin_runner import LAUNCHER_ENV, Launcher, PluginProcess, ProcessOptions
from bot.rosey.plugins.process.child_exit import ForeignChild
from bot.rosey.plugins.process.zygote import Zygote
from bot.rosey.supervision.spec import PluginSpec
from tests.supervisor.conftest import Stack, build_stack, core_bus, teardown_stack

__all__ = ["core_bus"]  # a fixture, re-exported for the fault matrix

FIXTURES = Path(__file__).parent / "fixtures"
INTROSPECT = FIXTURES / "introspect_plugin.py"
LAUNCHERS = tuple(Launcher)

RunPlugin = Callable[..., Awaitable[PluginProcess]]
Ask = Callable[..., Awaitable[dict[str, Any]]]


def launched_by(process: PluginProcess, launcher: str) -> bool:
    kind = ForeignChild if launcher == "zygote" else subprocess.Popen
    return isinstance(process.process, kind)


@pytest.fixture
async def zygote() -> AsyncIterator[Zygote]:
    own = Zygote()
    yield own
    await own.aclose()


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[EventBus]:
    async with EventBus(nats_url, name="zygote-test") as connected:
        yield connected


@pytest.fixture
async def run_plugin(nats_url: str, tmp_path: Path, zygote: Zygote) -> AsyncIterator[RunPlugin]:
    """``await run_plugin(name, launcher="zygote", path=INTROSPECT, **options)`` -> a ready PluginProcess."""
    started: list[PluginProcess] = []

    async def run(
        name: str, launcher: str = "zygote", path: Path = INTROSPECT, **options: Any
    ) -> PluginProcess:
        options.setdefault("data_dir", tmp_path / "data" / name)
        process = PluginProcess(
            name, path, nats_url=nats_url, options=ProcessOptions(launcher=launcher, zygote=zygote, **options)
        )
        started.append(process)
        await process.start()
        assert launched_by(process, launcher)
        return process

    yield run
    for process in started:
        await process.stop(timeout=5)


@pytest.fixture
def ask(bus: EventBus) -> Ask:
    async def request(plugin: str, *args: object, timeout: float = 10.0) -> dict[str, Any]:
        for attempt in range(3):  # NoResponders: not delivered (a sub-ms window after ready); resend
            try:
                reply = await bus.request(
                    Subjects.plugin_command(plugin, "execute"),
                    {"args": [str(a) for a in args]},
                    "zygote-test",
                    correlation_id=uuid.uuid4().hex,
                    timeout=timeout,
                )
            except NoResponders:
                if attempt == 2:
                    raise
                continue
            return dict(reply.data)
        raise AssertionError("unreachable")

    return request


@pytest.fixture(params=LAUNCHERS)
async def stack_factory(
    request: pytest.FixtureRequest,
    core_bus: EventBus,
    nats_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Any]:
    """``tests/supervisor``'s own stack (its ``build_stack``, whatever it takes), once per launcher.

    The launcher is chosen the documented way, ``$ROSEY_LAUNCHER``, which the stack's
    ``ProcessOptions`` read as their default; zygote children come from the loop's shared zygote.
    """
    launcher: str = request.param
    monkeypatch.setenv(LAUNCHER_ENV, launcher)
    stacks: list[Stack] = []

    async def make(*specs: PluginSpec, **options: Any) -> Stack:
        stack = await build_stack(core_bus, nats_url, tmp_path, *specs, **options)
        stacks.append(stack)
        for plugin in stack.supervisor.running():
            assert plugin.process is not None and launched_by(plugin.process, launcher), plugin.name
        return stack

    yield make
    for stack in stacks:
        await teardown_stack(stack)
