"""Rosey as an operator runs it: a ``rosey.toml``, the real :class:`RoseyApp`, and a core observer.

``start_rosey(...)`` writes a ``rosey.toml`` into the test's directory, loads it with
:func:`load_config`, starts :class:`RoseyApp` (embedded nats-server with one user per plugin,
OS sandbox per plugin) and connects an observer with the core's credentials read from the
runtime file, exactly as ``rosey send`` would. Everything is stopped after the test.

Waiting is always on a signal: replies, subscriptions, process exits, and the nats-server's own
log (a logging handler wakes waiters each time the server reports a denial) — never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.app import RoseyApp
from bot.rosey.config import LAUNCHER_ENV, STATE_DIR_ENV, RoseyConfig, load_config
from bot.rosey.core.event_bus import EventBus, Subscription
from bot.rosey.core.events import Event
from bot.rosey.runtime import RuntimeInfo, read_runtime
from bot.rosey.services.router import CommandOutcome, CoreRouter, OutcomeKind

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = FIXTURES / "hostile_plugin.py"
CANARY = FIXTURES / "canary_plugin.py"

TomlValue = str | int | bool | Sequence[str]


def toml_table(name: str, values: Mapping[str, TomlValue]) -> str:
    """One TOML table; JSON strings and arrays of strings are valid TOML values."""
    lines = [f"[{name}]"]
    for key, value in values.items():
        rendered = (
            ("true" if value else "false")
            if isinstance(value, bool)
            else json.dumps(value if isinstance(value, (str, int)) else list(value))
        )
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


class ServerLog(logging.Handler):
    """Wakes waiters whenever ``bot.rosey.broker.nats_server`` logs (it does, for every denial).

    The server's log is drained by a thread that updates ``NatsServer.violations`` *before* it
    logs the denial, so a predicate over ``app.status()`` re-checked after each wake-up sees it.
    """

    LOGGER = "bot.rosey.broker.nats_server"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.DEBUG)
        self._loop = loop
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._changed.set)

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async def wait() -> None:
            while True:
                self._changed.clear()
                if predicate():
                    return
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


@dataclass
class Collector:
    """Markers seen by a core subscription, with a wait for a given one."""

    seen: list[tuple[str, str]] = field(default_factory=list)  # (subject, marker)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handler(self, event: Event) -> None:
        self.seen.append((event.subject, str(event.data.get("marker", ""))))
        self._changed.set()

    def markers(self) -> set[str]:
        return {marker for _, marker in self.seen if marker}

    async def wait_for(self, marker: str, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while marker not in self.markers():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


@dataclass
class Traffic:
    """Commands to the canary, one after another, for as long as an attack is under way."""

    router: CoreRouter
    plugin: str = "canary"
    outcomes: list[CommandOutcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            self.outcomes.append(await self.router.execute(self.plugin, [f"t{n}"], timeout=5.0))
            with contextlib.suppress(TimeoutError):  # pace ~20/s; ends at once on stop
                await asyncio.wait_for(self._stop.wait(), 0.05)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)

    async def assert_all_answered(self) -> None:
        await self.stop()
        assert self.outcomes, "no canary traffic was sent"
        failed = [o for o in self.outcomes if not o.ok]
        assert not failed, f"canary failed {len(failed)}/{len(self.outcomes)}: {failed[:3]}"


@dataclass
class Rosey:
    """A running RoseyApp plus an observer connected with the core's own credentials."""

    app: RoseyApp
    config: RoseyConfig
    workdir: Path
    runtime: RuntimeInfo
    core: EventBus
    router: CoreRouter
    server_log: ServerLog
    _subscriptions: list[Subscription] = field(default_factory=list)
    _traffic: list[Traffic] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    async def command(self, plugin: str, *args: object, timeout: float = 10.0) -> CommandOutcome:
        return await self.router.execute(plugin, [str(a) for a in args], user="tester", timeout=timeout)

    async def attempt(self, plugin: str, *args: object, timeout: float = 10.0) -> dict[str, Any]:
        """Ask a hostile plugin to attempt something; return its report."""
        outcome = await self.command(plugin, *args, timeout=timeout)
        assert outcome.kind is OutcomeKind.RESULT, outcome
        return dict(outcome.data)

    async def canary_saw(self, marker: str) -> bool:
        outcome = await self.command("canary", "seen", marker)
        assert outcome.ok, outcome
        return bool(outcome.data["seen"])

    async def collect(self, *subjects: str) -> Collector:
        collector = Collector()
        for subject in subjects:
            self._subscriptions.append(await self.core.subscribe(subject, collector.handler))
        await self.core.flush()
        return collector

    def row(self, name: str) -> dict[str, Any]:
        status = self.app.status().plugin(name)
        assert status is not None, name
        return status.to_dict()

    def traffic(self) -> Traffic:
        traffic = Traffic(self.router).start()
        self._traffic.append(traffic)
        return traffic


StartRosey = Callable[..., Awaitable[Rosey]]


@pytest.fixture
async def start_rosey(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StartRosey]:
    """``await start_rosey({"hostile": {...}, "canary": {...}}, launcher="spawn")`` -> :class:`Rosey`.

    Each value is the plugin's ``[plugins.NAME]`` table; ``path`` defaults to the hostile
    fixture (the canary's to the canary fixture). The state dir is ``<tmp>/.rosey``, as written
    in the file: the suite-wide ``ROSEY_STATE_DIR`` override is removed for these tests.
    """
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    started: list[Rosey] = []
    apps: list[RoseyApp] = []
    handlers: list[ServerLog] = []

    async def start(
        plugins: Mapping[str, Mapping[str, TomlValue]] | None = None,
        *,
        sandbox: str = "best-effort",
        launcher: str | None = None,
        nats: Mapping[str, TomlValue] | None = None,
        workdir: Path | None = None,
        extra_toml: str = "",  # more tables as written (e.g. [secrets.X], [plugins.NAME.http])
    ) -> Rosey:
        workdir = workdir or tmp_path
        if launcher is not None:
            # $ROSEY_LAUNCHER overrides the file (as for `rosey run`): a test that names its
            # launcher gets that one even in a suite run with the variable set.
            monkeypatch.setenv(LAUNCHER_ENV, launcher)
        plugins = plugins if plugins is not None else {"hostile": {}, "canary": {}}
        text = toml_table(
            "rosey",
            {
                "state_dir": ".rosey",
                "sandbox": sandbox,
                "launcher": launcher or "zygote",  # unnamed: $ROSEY_LAUNCHER decides, if set
                "entry_points": False,
                "plugin_dirs": [],
            },
        )
        if nats:
            text += toml_table("nats", nats)
        for name, table in plugins.items():
            default = str(CANARY if name == "canary" else HOSTILE)
            text += toml_table(f"plugins.{name}", {"path": default, **table})
        config_file = workdir / "rosey.toml"
        config_file.write_text(text + extra_toml)
        config = load_config(config_file)

        server_log = ServerLog(asyncio.get_running_loop())
        logging.getLogger(ServerLog.LOGGER).addHandler(server_log)
        handlers.append(server_log)
        app = RoseyApp(config)
        apps.append(app)
        results = await app.start()
        assert all(error is None for error in results.values()), results

        runtime = read_runtime(config.state_dir)
        core = EventBus(
            runtime.nats_url, name="security-observer", user=runtime.user, password=runtime.password
        )
        await core.connect()
        router = CoreRouter(core, source="security-test")
        rosey = Rosey(app, config, workdir, runtime, core, router, server_log)
        started.append(rosey)
        await router.start(chat=False)
        return rosey

    yield start
    for rosey in started:
        for traffic in rosey._traffic:  # a failed test may leave its traffic running
            with contextlib.suppress(Exception):
                await traffic.stop()
        with contextlib.suppress(Exception):
            await rosey.router.stop()
        await rosey.core.disconnect()
    for app in apps:
        await app.stop()
    for handler in handlers:
        logging.getLogger(ServerLog.LOGGER).removeHandler(handler)


def violation(kind: str, subject: str) -> str:
    """The error a plugin's connection receives for a denied publish/subscription.

    nats-py lowercases the server's text, subject included (``_INBOX`` arrives as ``_inbox``).
    """
    return f'nats: permissions violation for {kind} to "{subject}"'.lower()


@pytest.fixture(params=["zygote", "spawn"])
def launcher(request: pytest.FixtureRequest) -> str:
    """Both launchers: an attack must fail against a forked plugin and a spawned one alike."""
    return str(request.param)
