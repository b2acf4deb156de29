"""What every benchmark section shares: a private nats-server with Rosey's real identities, the
core's bus and router, sandboxed plugin processes, the raw floor processes, and small statistics.

The server is configured as ``rosey run`` configures it (one core user without restrictions, one
restricted user per plugin with ``plugin_permissions``), so the server does the same permission
work for the raw responder as for a plugin: it runs as a plugin identity too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from bot.rosey.broker.identities import CORE_USER, Credentials, plugin_permissions, plugin_user
from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig, NatsUser
from bot.rosey.core.event_bus import EventBus
from bot.rosey.plugins import plugin_runner
from bot.rosey.plugins.contract import READY_MESSAGE, Env, watch_ready
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.plugins.process.environment import minimal_environment
from bot.rosey.plugins.process.launchers import Launcher, zygote_supported
from bot.rosey.plugins.process.zygote import Zygote, shared_zygote
from bot.rosey.plugins.sandbox import SandboxPolicy
from bot.rosey.services.router import CoreRouter, RouterConfig

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
IDLE_PLUGIN = BENCH_DIR / "plugins" / "idle_plugin.py"
UVLOOP_PLUGIN = BENCH_DIR / "plugins" / "uvloop_idle_plugin.py"
RAW_RESPONDER = BENCH_DIR / "raw_responder.py"

#: Plugin names with an identity on the bench server (all created up front: no reloads).
FLEET_SIZE = 100
RT_PLUGIN = "rt"  # the plugin commands go to in the round-trip figures
RAW_NAME = "raw"  # the identity (and subject) of the raw responder
COLD_NAME = "cold"  # cold-start plugin and floor
GW_NAME = "gw"  # the HTTP gateway benchmark's plugin


def fleet_name(i: int) -> str:
    return f"p{i}"


ALL_NAMES = (RT_PLUGIN, RAW_NAME, COLD_NAME, GW_NAME, *(fleet_name(i) for i in range(FLEET_SIZE)))

# The floor of a plugin start: import nats, connect, subscribe, flush (as a plugin identity), say
# READY on the same kind of pipe a plugin uses, then idle (so its memory can be read).
FLOOR_CODE = f"""
import asyncio, os, nats
async def main():
    nc = await nats.connect(os.environ["{Env.NATS_URL}"], user=os.environ["{Env.NATS_USER}"],
                            password=os.environ["{Env.NATS_PASSWORD}"])
    async def cb(msg):
        pass
    await nc.subscribe(os.environ["FLOOR_SUBJECT"], cb=cb)
    await nc.flush()
    fd = int(os.environ.pop("{Env.READY_FD}"))
    os.write(fd, {READY_MESSAGE!r})
    os.close(fd)
    await asyncio.Event().wait()
asyncio.run(main())
"""


# ---------------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


# ---------------------------------------------------------------------- launchers


def launcher_variants() -> list[tuple[str, Launcher]]:
    """``[(label, launcher)]`` to measure: every launcher (one this platform lacks fails and is
    reported as such)."""
    return [(launcher.value, launcher) for launcher in Launcher]


# ---------------------------------------------------------------------- environment


@dataclass
class BenchEnv:
    """One nats-server with every identity, the core bus and a router, in a temp state dir."""

    state: Path
    server: NatsServer
    creds: dict[str, Credentials]
    core: Credentials
    bus: EventBus | None = None
    router: CoreRouter | None = None
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    zygote: Zygote | None = None  # the loop's shared zygote, where the platform supports it
    zygote_ready_s: float | None = None  # its start -> imports done
    zygote_error: str | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    # -------------------------------------------------------------- plugins

    def policy(self, plugin_file: Path, data_dir: Path) -> SandboxPolicy:
        return SandboxPolicy.for_plugin(plugin_file=plugin_file, data_dir=data_dir, nats_port=self.port)

    def plugin(
        self,
        name: str,
        *,
        plugin_file: Path = IDLE_PLUGIN,
        launcher: Launcher | None = None,
        data_dir: Path | None = None,
        sandbox: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> PluginProcess:
        """A sandboxed PluginProcess as ``rosey run`` makes one (own identity, data dir, policy)."""
        data_dir = data_dir or self.state / "data" / name
        creds = self.creds[name]
        # No launcher: what PluginProcess does by default.
        extra: dict[str, Any] = {"launcher": launcher} if launcher is not None else {}
        options = ProcessOptions(
            data_dir=data_dir,
            nats_user=creds.user,
            nats_password=creds.password,
            sandbox=self.policy(plugin_file, data_dir) if sandbox else None,
            extra_env=dict(extra_env or {}),
            **extra,
        )
        return PluginProcess(name, plugin_file, self.url, options=options)

    # -------------------------------------------------------------- raw processes

    def process_env(self, name: str, **extra: str) -> dict[str, str]:
        creds = self.creds[name]
        data_dir = self.state / "raw" / name
        data_dir.mkdir(parents=True, exist_ok=True)
        return minimal_environment(
            plugin_name=name,
            data_dir=data_dir,
            nats_url=self.url,
            nats_user=creds.user,
            nats_password=creds.password,
            extra=extra,
        )

    def spawn_ready_process(
        self, argv: list[str], env: dict[str, str]
    ) -> tuple[subprocess.Popen[bytes], int]:
        """Popen with a readiness pipe (like PluginProcess); returns the process and the read end."""
        ready_read, ready_write = os.pipe()
        try:
            proc = subprocess.Popen(
                argv,
                env={**env, Env.READY_FD: str(ready_write)},
                cwd=self.state,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(ready_write,),
                start_new_session=True,
            )
        finally:
            os.close(ready_write)
        self.children.append(proc)
        return proc, ready_read

    async def start_raw_responder(self, *, uvloop: bool = False) -> subprocess.Popen[bytes]:
        subject = raw_subject()
        argv = [sys.executable, str(RAW_RESPONDER), "--url", self.url, "--subject", subject]
        if uvloop:
            argv.append("--uvloop")
        proc, ready = self.spawn_ready_process(argv, self.process_env(RAW_NAME))
        if not await wait_ready(ready, 15.0):
            raise RuntimeError("raw responder did not report ready")
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc in self.children:
            self.children.remove(proc)

    async def raw_client(self) -> Client:
        """A plain nats-py connection as the core identity: the raw requester."""
        return await nats.connect(
            self.url, name="bench-raw-client", user=self.core.user, password=self.core.password
        )


def raw_subject() -> str:
    # The raw responder listens where a plugin would, so it needs no extra grants.
    return f"rosey.commands.{RAW_NAME}.execute"


async def wait_ready(ready_read: int, timeout: float) -> bool:
    """True once READY arrives on the pipe; closes the read end."""
    answer = watch_ready(ready_read)
    try:
        return await asyncio.wait_for(answer, timeout)
    except TimeoutError:
        return False
    finally:
        answer.cancel()
        os.close(ready_read)


@contextlib.asynccontextmanager
async def bench_env(names: Iterable[str] = ALL_NAMES, state: Path | None = None):  # type: ignore[no-untyped-def]
    """Start the server (every identity created up front), the core bus and the router."""
    own = state is None
    state = state or Path(tempfile.mkdtemp(prefix="rosey-bench-"))
    core = Credentials(user=CORE_USER)
    creds = {n: Credentials(user=plugin_user(n)) for n in names}
    users = [NatsUser(user=core.user, password=core.password)]
    users += [
        NatsUser(user=c.user, password=c.password, permissions=plugin_permissions(n))
        for n, c in creds.items()
    ]
    server = NatsServer(NatsServerConfig(work_dir=state / "nats", jetstream=False, users=tuple(users)))
    server.start()
    env = BenchEnv(state=state, server=server, creds=creds, core=core)
    try:
        env.bus = EventBus(server.url, name="bench-core", user=core.user, password=core.password)
        await env.bus.connect()
        env.router = CoreRouter(
            env.bus, RouterConfig(command_timeout=10.0), known_plugins=lambda: list(creds)
        )
        await env.router.start(chat=False)
        env.zygote = _shared_zygote()
        if env.zygote is not None:
            # Started once per `rosey run`: its start is a figure of its own, not the first plugin's.
            t0 = time.perf_counter()
            try:
                await env.zygote.wait_ready()
            except Exception as exc:  # reported; the spawn launcher can still be measured
                env.zygote_error = f"{type(exc).__name__}: {exc}"
            else:
                env.zygote_ready_s = time.perf_counter() - t0
        yield env
    finally:
        if env.zygote is not None:
            with contextlib.suppress(Exception):
                await env.zygote.aclose()
        for proc in list(env.children):
            env.kill(proc)
        if env.router is not None:
            await env.router.stop()
        if env.bus is not None:
            with contextlib.suppress(Exception):
                await env.bus.disconnect()
        server.stop()
        if own:
            import shutil

            shutil.rmtree(state, ignore_errors=True)


def _shared_zygote() -> Zygote | None:
    """The running loop's shared zygote where the platform supports it, else None."""
    return shared_zygote() if zygote_supported() else None


def default_launcher_label() -> str:
    """The launcher PluginProcess uses when ProcessOptions names none (``$ROSEY_LAUNCHER``, the
    platform), as the runner itself answers it."""
    return PluginProcess(RT_PLUGIN, IDLE_PLUGIN).launcher.value


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def quiet_logging(log_file: Path | None) -> None:
    """Send warnings of the code under test to a file, not into the table."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    sink: logging.Handler = logging.FileHandler(log_file) if log_file else logging.NullHandler()
    sink.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(sink)
    root.setLevel(logging.WARNING)


def now() -> float:
    return time.perf_counter()


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far, in ns resolution (``/proc/<pid>/task/*/schedstat``;
    psutil's cpu_times() counts 10 ms ticks, too coarse for per-command figures)."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError, ProcessLookupError),
                open(f"/proc/{pid}/task/{tid}/schedstat") as f,
            ):
                total += int(f.read().split()[0])
    return total / 1e9


__all__ = [
    "ALL_NAMES",
    "COLD_NAME",
    "FLEET_SIZE",
    "FLOOR_CODE",
    "GW_NAME",
    "IDLE_PLUGIN",
    "RAW_NAME",
    "RT_PLUGIN",
    "UVLOOP_PLUGIN",
    "BenchEnv",
    "bench_env",
    "cpu_seconds",
    "default_launcher_label",
    "fleet_name",
    "launcher_variants",
    "median",
    "percentile",
    "plugin_runner",
    "quiet_logging",
    "raw_subject",
    "uvloop_available",
    "wait_ready",
]
