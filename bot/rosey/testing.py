"""Pytest fixtures and a harness for plugin authors (and for Rosey's own tests).

Installed as a pytest plugin (entry point ``pytest11`` named ``rosey``), so with Rosey installed
these fixtures are available in any test suite:

``nats_server``
    A private nats-server on a free 127.0.0.1 port, one per test module.
``nats_url``
    Its URL.
``harness``
    A :class:`PluginHarness` on that server: start your plugin in a real process, send it
    commands the way the bot does, and have every process stopped after the test, pass or fail::

        async def test_echo(harness):
            await harness.start_plugin("echo", "bot/rosey/plugins/examples/echo_plugin.py")
            reply = await harness.command("echo", ["hi"])
            assert reply.message == "🔊 Echo #1: hi"

    ``reply`` is a :class:`~bot.rosey.services.router.CommandOutcome`: ``reply.ok``, ``reply.kind``
    (RESULT, ERROR, TIMEOUT, CRASHED, ...), ``reply.data`` (everything the plugin answered).
    The test must be async: with pytest-asyncio's ``asyncio_mode = "auto"`` nothing else is
    needed, in strict mode mark it ``@pytest.mark.asyncio``.

Plugin services run in the harness as under ``rosey run``: ``self.storage`` (the server has
JetStream; each plugin's storage is emptied when the harness closes, so every test starts
afresh), ``self.send_file`` (the answer's ``reply.data["file"]`` describes the stored file,
kept under the harness's ``state_dir / "files"``) and ``self.http`` through the real gateway,
with the grants a test gives (see below for the hints)::

        await harness.allow_http("weather", {"allow": [{"url": "http://127.0.0.1:8080/",
            "allow_private": True, "secret": "owm", "inject": "query:appid"}]},
            secrets={"owm": "test-key"})

Errors that teach: a plugin that imports Rosey's host code fails to start with a
:class:`~bot.rosey.errors.PluginStartError` whose first line names the file, the line and the fix;
a hint a plugin writes without failing (a command that blocked its event loop for over a second,
say) becomes a :class:`~bot.rosey.errors.PluginHintWarning` in the test, as soon as the command
that caused it returns or at the latest when the plugin stops. pytest lists it under "warnings
summary"; with ``-W error`` (or ``filterwarnings = ["error"]``) it fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.chat_config import SecretSource
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import (
    BusNotConnected,
    HarnessNotConnected,
    PluginHintWarning,
    PluginNotFound,
    PluginStartError,
)
from bot.rosey.gateway_config import HttpGrant, parse_http_grant
from bot.rosey.grants import nats_port
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.plugins.process.child_exit import describe_exit
from bot.rosey.plugins.process.hint_log import HintLog
from bot.rosey.plugins.sandbox import SandboxPolicy
from bot.rosey.services.files import FilesService
from bot.rosey.services.gateway import HttpGateway
from bot.rosey.services.router import CommandOutcome, CoreRouter, OutcomeKind, RouterConfig
from bot.rosey.services.storage import StorageService
from bot.rosey.services.storage_jetstream import stream_name
from bot.rosey.supervision.lifecycle import LifecycleEvent
from bot.rosey.supervision.status import PluginState

try:  # pytest-asyncio's decorator makes the async fixture work in its strict mode too
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # without pytest-asyncio no async test can run anyway; keep the plugin loadable
    _async_fixture = pytest.fixture  # type: ignore[assignment]

# What a plugin's tests need, importable from this one module.
__all__ = [
    "CommandOutcome",
    "OutcomeKind",
    "PluginHarness",
    "PluginHintWarning",
    "PluginStartError",
    "harness",
    "nats_server",
    "nats_url",
]

logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server for this test module, bound to 127.0.0.1 on a port it chose, with
    JetStream (for plugin storage; its store is in the module's temporary directory)."""
    work_dir: Path = tmp_path_factory.mktemp("nats")
    server = NatsServer(NatsServerConfig(work_dir=work_dir, jetstream=True))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """URL of the module's private nats-server."""
    return nats_server.url


class PluginHarness:
    """Real plugin processes plus the bot's own router, on one NATS server.

    Use it through the ``harness`` fixture, or as ``async with PluginHarness(url) as h:``.
    Plugin data goes under ``state_dir`` (a private temporary directory when not given).

    Like the supervisor in production, the harness announces a plugin process that exits on
    its own on ``rosey.lifecycle.<name>.crashed``, so a command that kills its plugin ends as
    CRASHED at once instead of by timeout. Names ever started here count as known plugins: a
    command to a stopped one is UNAVAILABLE, to a name never started UNKNOWN.

    The plugin services run beside the router, as in ``rosey run``: storage (default quotas;
    on a server without JetStream every storage call says so), emptied for each plugin started
    here when the harness closes unless ``keep_storage=True``; files (default limits; stored
    under ``state_dir / "files"``); and the HTTP gateway, which refuses every request until
    :meth:`allow_http` grants some.
    """

    def __init__(
        self,
        nats_url: str,
        *,
        state_dir: str | os.PathLike[str] | None = None,
        router_config: RouterConfig | None = None,
        stop_timeout: float = 5.0,
        keep_storage: bool = False,
    ) -> None:
        self.nats_url = nats_url
        self.keep_storage = keep_storage
        self.stop_timeout = stop_timeout
        self._own_state_dir: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._own_state_dir = tempfile.TemporaryDirectory(prefix="rosey-harness-")
            state_dir = self._own_state_dir.name
        self.state_dir = Path(state_dir)
        self._router_config = router_config
        self._plugins: dict[str, PluginProcess] = {}
        self._known: set[str] = set()
        self._stopping: set[PluginProcess] = set()  # exits we asked for: not crashes
        self._announcements: set[asyncio.Task[None]] = set()
        self._bus: EventBus | None = None
        self._router: CoreRouter | None = None
        self._storage: StorageService | None = None
        self._gateway: HttpGateway | None = None
        self._files: FilesService | None = None
        self._http_grants: dict[str, HttpGrant] = {}
        self._secrets: dict[str, SecretSource] = {}
        self._hints: dict[str, HintLog] = {}  # plugin -> the hints it wrote (errors that teach)

    # ------------------------------------------------------------------ access

    @property
    def plugins(self) -> Mapping[str, PluginProcess]:
        """The plugins started (and not stopped) through this harness, by name."""
        return dict(self._plugins)

    @property
    def bus(self) -> EventBus:
        """The harness's own bus connection, e.g. to subscribe to what a plugin publishes."""
        if self._bus is None:
            raise HarnessNotConnected("the harness is not connected; await harness.connect() first")
        return self._bus

    @property
    def router(self) -> CoreRouter:
        if self._router is None:
            raise HarnessNotConnected("the harness is not connected; await harness.connect() first")
        return self._router

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Connect the harness's bus and router (start_plugin and command do it when needed)."""
        if self._bus is not None:
            return
        bus = EventBus(self.nats_url, name="rosey-harness")
        await bus.connect()
        router = CoreRouter(
            bus, self._router_config, known_plugins=lambda: self._known, source="rosey-harness"
        )
        storage = StorageService(bus, {}, server=self.nats_url)
        gateway = HttpGateway(bus, self._http_grants, self._secrets, source="rosey-harness")
        files = FilesService(bus, self.state_dir / "files", {}, ())
        try:
            await router.start()
            await storage.start()
            await gateway.start()
            await files.start()
        except BaseException:
            for service in (router, storage, files):
                with contextlib.suppress(Exception):
                    await service.stop()
            await bus.disconnect()
            raise
        self._bus, self._router, self._storage, self._gateway = bus, router, storage, gateway
        self._files = files

    async def allow_http(
        self, plugin: str, grant: Mapping[str, Any], *, secrets: Mapping[str, str] | None = None
    ) -> None:
        """Give ``plugin`` the HTTP grant ``grant``: the table ``[plugins.<plugin>.http]`` of
        rosey.toml, as a dict (validated the same way). ``secrets`` are the ``[secrets.NAME]``
        its rules name, as values: kept in files of the harness's state dir (mode 0600), which
        the gateway reads for each request; the plugin never sees them. Call it before the
        plugin's requests (the gateway restarts with the new grants)."""
        await self.connect()
        for name, value in (secrets or {}).items():
            folder = self.state_dir / "secrets"
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = folder / name
            path.touch(mode=0o600)
            path.write_text(value, encoding="utf-8")
            self._secrets[name] = SecretSource(key=f"secrets.{name}.file", file=path)
        parsed = parse_http_grant(plugin, grant, self._secrets)
        if parsed is None:
            self._http_grants.pop(plugin, None)
        else:
            self._http_grants[plugin] = parsed
        old, self._gateway = self._gateway, None
        if old is not None:
            await old.stop()
        gateway = HttpGateway(self.bus, self._http_grants, self._secrets, source="rosey-harness")
        await gateway.start()
        self._gateway = gateway

    @property
    def gateway(self) -> HttpGateway:
        """The harness's HTTP gateway: ``.audit.records`` holds what each plugin asked for."""
        if self._gateway is None:
            raise HarnessNotConnected("the harness is not connected; await harness.connect() first")
        return self._gateway

    async def start_plugin(
        self,
        name: str,
        path: str | os.PathLike[str] | None = None,
        *,
        entry: str | None = None,
        options: ProcessOptions | None = None,
        sandbox: bool = False,
    ) -> PluginProcess:
        """Start plugin ``name`` from a file (or ``entry="pkg.module:Class"``); return once it is ready.

        ``sandbox=True`` runs it under the OS sandbox ``rosey run`` applies by default (strict:
        it fails to start where the kernel cannot apply every layer), so a test shows that the
        plugin works with only the access it will get. Raises
        :class:`~bot.rosey.errors.PluginStartError` with the plugin's stderr when it dies or does
        not report ready in ``options.ready_timeout``; no process is left behind.
        """
        if name in self._plugins:
            raise PluginStartError(f"plugin '{name}' is already started in this harness", plugin=name)
        await self.connect()
        options = options or ProcessOptions()
        changes: dict[str, Any] = {}
        if entry is not None:
            changes["entry"] = entry
        data_dir = options.data_dir or self.state_dir / "data" / name
        if options.data_dir is None:
            changes["data_dir"] = data_dir
        if sandbox:
            changes["sandbox"] = SandboxPolicy.for_plugin(
                plugin_file=Path(path) if path is not None else None,
                data_dir=data_dir,
                nats_port=nats_port(self.nats_url),
                strict=True,
            )
        if changes:
            options = dataclasses.replace(options, **changes)
        runner = PluginProcess(name, path, nats_url=self.nats_url, options=options)
        # Registered before start(): if the test is cancelled mid-start, close() still reaps it.
        self._plugins[name] = runner
        self._known.add(name)
        self._hints[name] = HintLog()
        runner.output.add_listener(self._hints[name])
        try:
            await runner.start()
        except BaseException:
            self._plugins.pop(name, None)
            self._hints.pop(name, None)  # a failed start raises with its hint already
            await _stop_quietly(runner, self.stop_timeout)
            raise
        runner.add_exit_callback(lambda returncode: self._on_exit(runner, returncode))
        return runner

    async def command(
        self,
        name: str,
        args: Sequence[str] = (),
        *,
        user: str | dict[str, Any] = "tester",
        channel: str = "test",
        timeout: float = 10.0,
        context: Mapping[str, Any] | None = None,
    ) -> CommandOutcome:
        """Send a command the way the bot does and return its outcome (never raises for plugin failures).

        ``context`` adds what a chat command carries besides its arguments, user and channel,
        e.g. ``{"platform": "irc", "private": False}``.
        """
        await self.connect()
        outcome = await self.router.execute(
            name, list(args), user=user, channel=channel, timeout=timeout, context=context
        )
        self._warn_hints(name)
        return outcome

    async def stop_plugin(self, name: str) -> int | None:
        """Stop one plugin (SIGTERM, then SIGKILL) and return its exit code."""
        runner = self._plugins.pop(name, None)
        if runner is None:
            raise PluginNotFound(f"plugin '{name}' was not started by this harness", plugin=name)
        self._stopping.add(runner)
        returncode = await runner.stop(self.stop_timeout)
        self._warn_hints(name)  # its output is read to the end by now
        return returncode

    async def close(self) -> None:
        """Stop every plugin and disconnect; safe to call twice, and never skips a step."""
        runners, self._plugins = list(self._plugins.values()), {}
        self._stopping.update(runners)
        try:
            await asyncio.gather(*(_stop_quietly(r, self.stop_timeout) for r in runners))
            if self._announcements:
                await asyncio.gather(*self._announcements, return_exceptions=True)
        finally:
            router, self._router = self._router, None
            bus, self._bus = self._bus, None
            storage, self._storage = self._storage, None
            gateway, self._gateway = self._gateway, None
            files, self._files = self._files, None
            try:
                if router is not None:
                    await router.stop()
                if gateway is not None:
                    await gateway.stop()
                if files is not None:
                    await files.stop()
                if storage is not None:
                    await storage.stop()
                if bus is not None and storage is not None and not self.keep_storage:
                    await _delete_storage(bus, self._known)
            finally:
                if bus is not None:
                    await bus.disconnect()
                if self._own_state_dir is not None:
                    self._own_state_dir.cleanup()
                    self._own_state_dir = None
                for name in list(self._hints):  # last: a warning raised as an error skips nothing
                    self._warn_hints(name)

    def _warn_hints(self, name: str) -> None:
        """Each hint plugin ``name`` wrote since the last call, as a PluginHintWarning (once each)."""
        log = self._hints.get(name)
        for hint in log.take() if log is not None else ():
            warnings.warn(PluginHintWarning(f"plugin '{name}': {hint}", plugin=name), stacklevel=3)

    def _on_exit(self, runner: PluginProcess, returncode: int) -> None:
        if runner in self._stopping or self._bus is None:
            return
        task = asyncio.get_running_loop().create_task(self._announce_crash(self._bus, runner, returncode))
        self._announcements.add(task)
        task.add_done_callback(self._announcements.discard)

    async def _announce_crash(self, bus: EventBus, runner: PluginProcess, returncode: int) -> None:
        name = runner.plugin_name
        event = LifecycleEvent(
            plugin=name,
            state=PluginState.CRASHED,
            previous=PluginState.RUNNING,
            reason=describe_exit(returncode),
            last_exit=describe_exit(returncode),
            returncode=returncode,
            pid=runner.pid,
        )
        with contextlib.suppress(BusNotConnected):
            await bus.publish(Subjects.lifecycle(name, event.state), event.to_dict(), source="rosey-harness")

    async def __aenter__(self) -> PluginHarness:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _delete_storage(bus: EventBus, plugins: set[str]) -> None:
    """Delete the storage of ``plugins`` (their JetStream streams), so the next test starts empty."""
    js = bus.client.jetstream(timeout=5.0)
    for name in sorted(plugins):
        with contextlib.suppress(Exception):  # no bucket (never stored), or no JetStream
            await js.delete_stream(stream_name(name))


async def _stop_quietly(runner: PluginProcess, grace: float) -> None:
    """Stop ``runner``; a failure is logged, not raised, so one bad plugin cannot keep others alive."""
    try:
        await runner.stop(grace)
    except Exception:
        logger.exception("stopping plugin '%s' failed; killing it", runner.plugin_name)
        runner.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner.wait(), grace)


@_async_fixture
async def harness(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[PluginHarness]:
    """A :class:`PluginHarness` on the module's nats-server; every plugin is stopped afterwards."""
    plugin_harness = PluginHarness(nats_server.url, state_dir=tmp_path / "rosey-state")
    try:
        await plugin_harness.connect()
        yield plugin_harness
    finally:
        await plugin_harness.close()


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark async tests that use the harness as asyncio tests, so a plugin's test suite needs no
    ``asyncio_mode = "auto"`` (in pytest-asyncio's default strict mode, an unmarked async test
    fails with "async def functions are not natively supported"). Runs before pytest-asyncio
    looks at the function; a test already marked, or not using ``harness``, is left alone."""
    if not isinstance(collector, pytest.Module | pytest.Class) or not collector.funcnamefilter(name):
        return
    if not inspect.iscoroutinefunction(obj):
        return
    parameters = inspect.signature(obj).parameters
    if "harness" in parameters or "nats_server" in parameters or "nats_url" in parameters:
        marks = getattr(obj, "pytestmark", [])
        if not any(mark.name == "asyncio" for mark in marks):
            pytest.mark.asyncio(obj)
