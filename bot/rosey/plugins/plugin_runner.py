"""
Plugin process runner
Manages one plugin as a child process: start until ready, output, stats, stop.

``start()`` returns once the plugin says it is connected and subscribed (a readiness pipe, not
a sleep) and raises :class:`PluginStartError` with the plugin's stderr if it dies first.
Output is read continuously into bounded buffers; exit is seen through a pidfd; ``stop()`` is
SIGTERM, then SIGKILL after the timeout, all without blocking the event loop.

Two launchers start the process (``ProcessOptions.launcher``), and everything after the start
(readiness, output, exit, stop, kill, stats) is the same code for both:

* ``Launcher.ZYGOTE`` (the default on Linux): a fork of a template process that has already imported
  asyncio, nats-py and the SDK (:mod:`bot.rosey.plugins.process.zygote`): ~1 ms instead of ~100 ms,
  and most of its memory shared. ``self.process`` is then a
  :class:`~bot.rosey.plugins.process.child_exit.ForeignChild` with the ``Popen`` subset used here.
* ``Launcher.SPAWN``: ``python -m bot.rosey.plugins.launcher`` with ``subprocess.Popen``.

``$ROSEY_LAUNCHER`` (``zygote`` or ``spawn``) changes the default, e.g. to run a test suite
against the plain spawn path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bot.rosey.core.event_bus import DEFAULT_NATS_URL
from bot.rosey.core.subjects import validate_plugin_name
from bot.rosey.errors import PluginNotStarted, PluginStartError
from bot.rosey.plugins.contract import Env, LaunchReport, watch_ready
from bot.rosey.plugins.ledger import CommandLedger
from bot.rosey.plugins.process.budget import OutputBudget, OutputRate
from bot.rosey.plugins.process.child_exit import ExitWatcher, ForeignChild, describe_exit
from bot.rosey.plugins.process.environment import minimal_environment
from bot.rosey.plugins.process.failure import summarize_failure
from bot.rosey.plugins.process.launchers import LAUNCHER_ENV, Launcher, default_launcher, zygote_supported
from bot.rosey.plugins.process.output import LogForwarder, OutputBuffer, PipeReader, capture_pipe
from bot.rosey.plugins.process.zygote import Zygote, shared_zygote
from bot.rosey.plugins.sandbox import SandboxPolicy
from bot.rosey.plugins.sandbox.pidns import pid_is_namespace_init, plugin_process
from bot.rosey.process_record import ProcessRecord, ProcessRole

# Launcher, LAUNCHER_ENV and default_launcher are defined in process.launchers, re-exported here
# beside the options that use them.
__all__ = ["LAUNCHER_ENV", "Launcher", "PluginProcess", "ProcessOptions", "default_launcher"]

logger = logging.getLogger(__name__)
output_logger = logging.getLogger("rosey.plugin_output")

_MB = 1024 * 1024
_EXIT_AFTER_EOF_GRACE = 2.0

#: The fd number a zygote child gets its readiness pipe on (a spawned one keeps ours).
_ZYGOTE_READY_FD = 3


@functools.cache
def _warn_no_zygote() -> None:
    logger.warning("the zygote launcher is not supported on this platform; plugins are spawned instead")


@functools.cache
def _total_memory() -> int:
    # psutil's memory_percent() re-reads /proc/meminfo on every call; the total does not change.
    return int(psutil.virtual_memory().total)


def default_state_dir() -> Path:
    """Where runtime state lives unless configured: ``$ROSEY_STATE_DIR`` or ``./.rosey``."""
    return Path(os.getenv("ROSEY_STATE_DIR", ".rosey"))


@dataclass(frozen=True, kw_only=True)
class ProcessOptions:
    """How to run one plugin process; every field has a sensible default."""

    entry: str | None = None  # "package.module:Class" instead of a plugin file
    # A plugin in another language: the launcher sandboxes itself, then execs this program with
    # the plugin file as its last argument (docs/plugins/PROTOCOL.md). Always spawned: the
    # zygote is a Python process and can only become a Python plugin.
    command: tuple[str, ...] = ()
    data_dir: Path | None = None  # default: <state dir>/data/<name>
    nats_user: str | None = None
    nats_password: str | None = field(default=None, repr=False)
    env_grants: tuple[str, ...] = ()  # host variables this plugin may see
    extra_env: dict[str, str] = field(default_factory=dict, repr=False)  # may hold an adapter's secrets
    ready_timeout: float = 15.0
    output_lines: int = 1000
    log_output: bool = True  # forward output lines (rate-limited) to the "rosey.plugin_output" logger
    sandbox: SandboxPolicy | None = None  # applied by the child before plugin code; None: no sandbox
    launcher: Launcher = field(default_factory=default_launcher)  # its value ("zygote", "spawn") works too
    zygote: Zygote | None = field(default=None, compare=False, repr=False)  # None: the loop's shared one
    # Where each started process is recorded, so that a later run can end it if we die first.
    record: ProcessRecord | None = field(default=None, compare=False, repr=False)
    # A plugin with its own environment (bot.rosey.plugin_envs): its site-packages, then Rosey's.
    # Spawned with -S and added by the launcher once the sandbox is on, so that no .pth file of
    # the plugin's packages runs before it. Set with the environment's interpreter (python_executable).
    site_dirs: tuple[str, ...] = ()
    # issue 16: replica N of its plugin (None: its only process). A replica keeps a command ledger
    # on its readiness pipe (see bot.rosey.plugins.ledger).
    replica: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "site_dirs", tuple(self.site_dirs))
        try:
            launcher = Launcher(self.launcher)
        except ValueError:
            choices = ", ".join(Launcher)
            raise ValueError(f"launcher must be one of {choices}, got {self.launcher!r}") from None
        object.__setattr__(self, "launcher", launcher)
        object.__setattr__(self, "command", tuple(self.command))
        if any(not isinstance(item, str) or not item for item in self.command):
            raise ValueError(f"command must hold non-empty strings, got {self.command!r}")
        if self.ready_timeout <= 0:
            raise ValueError(f"ready_timeout must be positive, got {self.ready_timeout}")
        if self.output_lines < 1:
            raise ValueError(f"output_lines must be at least 1, got {self.output_lines}")


class PluginProcess:
    """
    Manages a single plugin as subprocess

    Example:
        runner = PluginProcess("trivia", "plugins/trivia/trivia_plugin.py")
        await runner.start()
        stats = runner.get_stats()
        print(f"CPU: {stats['cpu_percent']}%")
        await runner.stop()
    """

    def __init__(
        self,
        plugin_name: str,
        plugin_path: str | os.PathLike[str] | None = None,
        nats_url: str | None = None,
        nats_token: str | None = None,
        python_executable: str | None = None,
        *,
        options: ProcessOptions | None = None,
    ):
        self.plugin_name = validate_plugin_name(plugin_name)
        self.options = options or ProcessOptions()
        if plugin_path is None and self.options.entry is None:
            raise ValueError(f"plugin '{plugin_name}' needs a plugin_path or options.entry")
        self.plugin_path = Path(plugin_path) if plugin_path is not None else None
        self.nats_url: str = nats_url or os.getenv(Env.NATS_URL) or DEFAULT_NATS_URL
        # None: the documented default, $NATS_TOKEN. "" (what rosey run passes): no token at all.
        self.nats_token = (nats_token if nats_token is not None else os.getenv(Env.NATS_TOKEN)) or None
        self.python_executable = python_executable or sys.executable
        self.data_dir = self.options.data_dir or default_state_dir() / "data" / self.plugin_name

        self.process: subprocess.Popen[bytes] | ForeignChild | None = None
        # The launcher that made the current (or last) process: what happened, not what was asked
        # for (a zygote request falls back to spawn where the platform or interpreter cannot fork).
        self.launched_by: Launcher | None = None
        # What the launcher applied in the current process, read from the readiness pipe's first
        # line before plugin code ran (None: not reported yet, or not by Rosey's launcher).
        self.launch_report: LaunchReport | None = None
        #: Called (on the loop) once the launcher's report is read: the process exists, sandboxed.
        self.on_launched: Callable[[], None] | None = None
        self.psutil_process: psutil.Process | None = None
        # s-pidns: the process running the plugin's code, when it is not the supervised one (the
        # pid-ns layer runs it in a PID namespace below it): what CPU and memory are read from.
        self._measured: psutil.Process | None = None
        self.output = OutputBuffer(self.options.output_lines)
        self.returncode: int | None = None
        self.ready_seconds: float | None = None  # spawn -> ready, of the last start
        self.start_failure: str | None = None  # why the last start failed, in one line
        self.start_failure_raised = False
        self._in_on_start = False  # the SDK said it calls on_start (this start)
        self._start_time: float | None = None
        self._spawned_wall = 0.0
        self._exit: ExitWatcher | None = None
        self._pipes: list[PipeReader] = []
        self._output_rate: OutputRate | None = None
        self._on_output_flood: Callable[[str], None] | None = None
        self._budget: OutputBudget | None = None
        # issue 16: the commands this replica holds, read from its readiness pipe after READY.
        self.ledger = CommandLedger()
        self._ledger_fd: int | None = None
        # issue 16: set for a reload's new version (and its restarts): see Env.JOIN_AFTER_START.
        self.join_after_start = False
        if self.options.log_output:
            self.output.add_listener(LogForwarder(output_logger, self.plugin_name))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """
        Start the plugin and return once it reports ready.

        Raises:
            FileNotFoundError: If plugin file doesn't exist
            PluginStartError (a RuntimeError): already running, died or timed out before ready
        """
        if self.is_running():
            raise PluginStartError(f"Plugin '{self.plugin_name}' already running", plugin=self.plugin_name)
        if self.plugin_path is not None and not self.plugin_path.is_file():
            raise FileNotFoundError(f"Plugin file not found: {self.plugin_path}")

        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "tmp").mkdir(exist_ok=True)
        self.returncode = None
        self.launch_report = None
        self._measured = None
        self._close_ledger()
        self.ledger.clear()
        self._spawned_wall = time.time()
        spawned_at = time.monotonic()  # ready_seconds counts the launch itself too
        ready_read, ready_write = os.pipe()
        try:
            if self._use_zygote():
                self.process = await self._fork_from_zygote(ready_write)
            else:
                self.process = self._spawn(ready_write)
        except OSError as exc:
            os.close(ready_read)
            raise PluginStartError(
                f"Plugin '{self.plugin_name}' could not be spawned: {exc}", plugin=self.plugin_name
            ) from exc
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
        self._start_time = time.monotonic()
        self.launched_by = Launcher.ZYGOTE if isinstance(self.process, ForeignChild) else Launcher.SPAWN
        logger.info(
            "Starting plugin '%s' (pid %d)",
            self.plugin_name,
            self.process.pid,
            extra={"plugin": self.plugin_name},
        )
        if self.options.record is not None:
            self.options.record.started(ProcessRole.PLUGIN, self.plugin_name, self.process.pid)

        self._exit = ExitWatcher(self.process)
        self._exit.add_callback(self._on_exit)
        assert self.process.stdout is not None and self.process.stderr is not None
        pipes = [(self.process.stdout, "stdout"), (self.process.stderr, "stderr")]
        self._close_pipes()  # a previous run's grandchild may still hold its pipes open
        self._pipes = []
        try:
            self._budget = self._new_budget()
            for pipe, stream in pipes:
                self._pipes.append(await capture_pipe(pipe, self.output, stream, self._budget))
            with contextlib.suppress(psutil.Error):
                self.psutil_process = psutil.Process(self.process.pid)
                self.psutil_process.cpu_percent(None)  # prime: the first call always returns 0.0
            ready = await self._wait_ready(ready_read)
        except asyncio.CancelledError:
            self.kill_tree()  # whoever gave up on this start must not leave a process behind
            for pipe, _stream in pipes[len(self._pipes) :]:
                pipe.close()  # not handed to a reader yet
            os.close(ready_read)
            raise
        except BaseException:
            os.close(ready_read)
            raise
        if ready and self.options.replica is not None:
            self._watch_ledger(ready_read)  # issue 16: the pipe goes on as the command ledger
        else:
            os.close(ready_read)
        if not ready:
            await self._raise_start_failure()
        self.ready_seconds = time.monotonic() - spawned_at
        logger.info(
            "Plugin '%s' ready (pid %d) in %.0f ms",
            self.plugin_name,
            self.process.pid,
            self.ready_seconds * 1000,
        )

    def limit_output(self, rate: OutputRate | None, on_flood: Callable[[str], None] | None = None) -> None:
        """Read this plugin's output at most at ``rate`` from its next start on (None: unlimited).

        Beyond the rate the pipes are not read, so the plugin waits on its own writes. A plugin
        held back for most of ``rate.flood_seconds`` is a flood: ``on_flood(reason)`` is called
        once per run (the supervisor passes its ``kill``); without it the process is killed here.
        """
        self._output_rate = rate
        self._on_output_flood = on_flood

    def _new_budget(self) -> OutputBudget | None:
        if self._output_rate is None:
            return None
        return OutputBudget(self._output_rate, self.plugin_name, self._output_flood)

    def _output_flood(self, reason: str) -> None:
        if self._on_output_flood is not None:
            self._on_output_flood(reason)
            return
        logger.warning(
            "killing plugin '%s': %s", self.plugin_name, reason, extra={"plugin": self.plugin_name}
        )
        self.kill_tree()

    @property
    def launcher(self) -> Launcher:
        """The launcher the next start uses: the configured one, unless the platform cannot."""
        if self.options.command:
            return Launcher.SPAWN  # a program in another language: the zygote is a Python process
        if self.options.launcher is not Launcher.ZYGOTE:
            return self.options.launcher
        if self.options.site_dirs:
            return Launcher.SPAWN  # an environment of its own: the zygote has Rosey's imports loaded
        if not zygote_supported():
            _warn_no_zygote()
            return Launcher.SPAWN
        zygote = self.options.zygote
        executable = zygote.python_executable if zygote is not None else sys.executable
        # The zygote runs the host's interpreter; another interpreter can only be spawned.
        return Launcher.ZYGOTE if self.python_executable == executable else Launcher.SPAWN

    def _use_zygote(self) -> bool:
        return self.launcher is Launcher.ZYGOTE

    def _target(self) -> list[str]:
        """The launcher's argv: which plugin to run."""
        if self.options.command:
            if self.plugin_path is None:
                raise ValueError(f"plugin '{self.plugin_name}': a command needs the plugin file it runs")
            return ["--exec", *self.options.command, str(self.plugin_path.resolve())]
        if self.plugin_path is not None:
            return ["--path", str(self.plugin_path.resolve())]
        assert self.options.entry is not None
        return ["--entry", self.options.entry]

    def _environment(self, ready_fd: int, parent_pid: int | None) -> dict[str, str]:
        return minimal_environment(
            plugin_name=self.plugin_name,
            data_dir=self.data_dir.resolve(),
            nats_url=self.nats_url,
            nats_token=self.nats_token,
            nats_user=self.options.nats_user,
            nats_password=self.options.nats_password,
            granted=self.options.env_grants,
            extra={
                **self.options.extra_env,
                Env.READY_FD: str(ready_fd),
                **({Env.PARENT_PID: str(parent_pid)} if parent_pid is not None else {}),
                **({Env.SANDBOX: self.options.sandbox.to_json()} if self.options.sandbox else {}),
                **({Env.REPLICA: str(self.options.replica)} if self.options.replica is not None else {}),
                **({Env.JOIN_AFTER_START: "1"} if self.join_after_start else {}),
                **(
                    {Env.SITE_DIRS: os.pathsep.join(self.options.site_dirs)} if self.options.site_dirs else {}
                ),
            },
        )

    async def _fork_from_zygote(self, ready_write: int) -> ForeignChild:
        # The zygote child dies with the zygote (which checks its own parent), not with us.
        zygote = self.options.zygote or shared_zygote()
        return await zygote.spawn(
            self._target(),
            env=self._environment(_ZYGOTE_READY_FD, parent_pid=None),
            cwd=self.data_dir.resolve(),
            pass_fds={_ZYGOTE_READY_FD: ready_write},
        )

    def _spawn(self, ready_write: int) -> subprocess.Popen[bytes]:
        target = self._target()
        env = self._environment(ready_write, parent_pid=os.getpid())
        # -S (own environment): no site-packages, so no .pth file, until the sandbox is on.
        flags = ["-s", "-S", "-P"] if self.options.site_dirs else ["-s", "-P"]
        # Popen runs on the event loop's thread on purpose: PR_SET_PDEATHSIG fires when the
        # *thread* that forked the child exits, so forking from a pool thread would kill it early.
        return subprocess.Popen(
            # -s -P (as the zygote): neither the user site-packages under $HOME nor the working
            # directory goes on sys.path. Both are the plugin's data dir, which it may write: a
            # planted argparse.py or .pth file there would otherwise run before the sandbox.
            [self.python_executable, *flags, "-m", "bot.rosey.plugins.launcher", *target],
            env=env,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(ready_write,),
            # Own session and process group: a terminal's Ctrl-C reaches only `rosey run` (which
            # then stops plugins gracefully), and kill_tree() can kill every descendant at once.
            start_new_session=True,
        )

    def _on_start_begun(self) -> None:
        self._in_on_start = True

    async def _wait_ready(self, ready_read: int) -> bool:
        """True once the child wrote READY; False if it exited, closed the pipe or timed out."""
        self._in_on_start = False
        answer = watch_ready(
            ready_read,
            on_launch=self._on_launch,
            on_start_begun=self._on_start_begun,
            on_other=self.ledger.feed if self.options.replica is not None else None,
        )
        assert self._exit is not None
        exit_task: asyncio.Future[Any] = asyncio.ensure_future(self._exit.wait())
        racers: set[asyncio.Future[Any]] = {answer, exit_task}
        try:
            done, _ = await asyncio.wait(
                racers, timeout=self.options.ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if answer in done and not answer.result() and not exit_task.done():
                # The pipe closed without READY: the child is almost always exiting, and its
                # end-of-file can beat the pidfd. Give the exit a moment to show, for the reason.
                await asyncio.wait({exit_task}, timeout=_EXIT_AFTER_EOF_GRACE)
        finally:
            answer.cancel()  # stops watching the pipe (a no-op once answered)
            exit_task.cancel()
        return answer in done and answer.result()

    # ------------------------------------------------------------------ issue 16: the ledger

    def _watch_ledger(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._ledger_fd = fd
        asyncio.get_running_loop().add_reader(fd, self._read_ledger)

    def _read_ledger(self) -> None:
        """Everything the replica wrote so far; at end of file (it died) the pipe is closed."""
        fd = self._ledger_fd
        while fd is not None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_ledger()
                return
            self.ledger.feed(data)

    def _close_ledger(self) -> None:
        fd, self._ledger_fd = self._ledger_fd, None
        if fd is not None:
            with contextlib.suppress(RuntimeError):  # no loop any more (interpreter shutdown)
                asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def open_commands(self) -> tuple[str, ...]:
        """issue 16: the commands this replica took and did not answer, with every line it wrote
        before now read (call it once the process is dead, for the exact set)."""
        self._read_ledger()
        return self.ledger.open()

    def _on_launch(self, report: LaunchReport) -> None:
        self.launch_report = report
        # s-pidns: with the PID namespace the plugin's code runs in a child of the supervised
        # process (which only relays signals and the exit): measure that one.
        if report.sandbox and "pid-ns" in report.sandbox and self.process is not None:
            pid = plugin_process(self.process.pid)
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    measured = psutil.Process(pid)
                    measured.cpu_percent(None)  # prime, as for the supervised process
                    self._measured = measured
        if self.on_launched is not None:
            self.on_launched()

    @property
    def measured_pid(self) -> int | None:
        """The process whose CPU and memory are the plugin's: the supervised one, or the plugin
        process in its PID namespace (s-pidns, see ``sandbox.pidns``)."""
        if self._measured is not None:
            return self._measured.pid
        return self.pid

    async def _raise_start_failure(self) -> None:
        assert self.process is not None and self._exit is not None
        if self._exit.exited:
            reason = f"exited before it was ready ({describe_exit(self._exit.returncode)})"
        else:
            elapsed = time.monotonic() - (self._start_time or time.monotonic())
            if elapsed < self.options.ready_timeout:
                reason = "closed its readiness pipe without reporting ready"
            elif self._in_on_start:
                reason = f"on_start did not finish within {self.options.ready_timeout:g} s"
            else:
                reason = f"did not report ready within {self.options.ready_timeout:g}s"
            self.kill_tree()
            await self._exit.wait()
        await self._wait_pipes_closed(1.0)
        since_spawn = [
            line.text
            for line in self.output.lines
            if line.stream == "stderr" and line.timestamp >= self._spawned_wall
        ]
        stderr = "\n".join(since_spawn[-40:]) or "(no output on stderr)"
        self._release()
        # One line for status and the ready line: the plugin's exception and where it was raised
        # when it left a traceback, else how the process ended.
        summary = summarize_failure(since_spawn)
        self.start_failure = summary or reason
        self.start_failure_raised = summary is not None  # an exception, not a timeout or a signal
        process_says = reason if reason.startswith("on_start") else f"it {reason}"
        headline = f"{summary} ({process_says})" if summary else process_says
        raise PluginStartError(
            f"Plugin '{self.plugin_name}' failed to start: {headline}.\n{stderr}", plugin=self.plugin_name
        )

    async def stop(self, timeout: float = 5.0) -> int | None:
        """
        Stop plugin gracefully: SIGTERM, then SIGKILL if it is still alive after ``timeout``.

        Returns the exit code (negative: killed by that signal), or None if it was not running.
        """
        if self.process is None or self._exit is None:
            logger.debug("Plugin '%s' not running", self.plugin_name)
            return None
        if not self._exit.exited:
            logger.info(
                "Stopping plugin '%s' (pid %d)",
                self.plugin_name,
                self.process.pid,
                extra={"plugin": self.plugin_name},
            )
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._exit.wait(), timeout)
            except TimeoutError:
                logger.warning(
                    "Plugin '%s' didn't stop within %gs, killing",
                    self.plugin_name,
                    timeout,
                    extra={"plugin": self.plugin_name},
                )
                self.process.kill()
                await self._exit.wait()
        await self._wait_pipes_closed(1.0)
        returncode = self.returncode
        self._release()
        return returncode

    def kill(self) -> None:
        """SIGKILL the plugin now (e.g. it broke a limit); its exit is reported as usual."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    def kill_tree(self) -> None:
        """SIGKILL the plugin and every process it started (they do not die with it by themselves)."""
        children: list[psutil.Process] = []
        if self.psutil_process is not None:
            with contextlib.suppress(psutil.Error):
                children = self.psutil_process.children(recursive=True)
        if self.process is not None and self.process.returncode is None:
            # The group catches children forked after the listing above; the listing catches
            # those that moved to a group of their own.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.kill()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()

    def descendants(self) -> list[psutil.Process]:
        """Every process the plugin started (raises psutil.Error if the plugin is gone).

        Leaves out the init of the plugin's PID namespace and the plugin process in it: the
        sandbox starts them, before any plugin code, so that the plugin's children die with the
        plugin (see ``sandbox.pidns``).
        """
        if self.psutil_process is None:
            return []
        found = []
        measured = self._measured.pid if self._measured is not None else None
        for child in self.psutil_process.children(recursive=True):
            if child.pid != measured and pid_is_namespace_init(child.pid) is False:  # None: gone meanwhile
                found.append(child)
        return found

    def is_running(self) -> bool:
        """Check if plugin process is running"""
        return self._exit is not None and not self._exit.exited

    async def wait(self) -> int:
        """Wait for the plugin process to exit and return its exit code."""
        if self._exit is None:
            raise PluginNotStarted(f"plugin '{self.plugin_name}' was never started", plugin=self.plugin_name)
        return await self._exit.wait()

    def add_exit_callback(self, callback: Any) -> None:
        """Call ``callback(returncode)`` on the event loop when the current process exits."""
        if self._exit is None:
            raise PluginNotStarted(f"plugin '{self.plugin_name}' is not started", plugin=self.plugin_name)
        self._exit.add_callback(callback)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def last_exit(self) -> str | None:
        """'exit code 3', 'killed by SIGKILL', ... of the last process, or None."""
        return None if self.returncode is None else describe_exit(self.returncode)

    # ------------------------------------------------------------------ observation

    def get_stats(self) -> dict[str, Any]:
        """
        Resource usage, without blocking: CPU % since the previous call, memory, threads, fds.

        Returns ``{"running": False, "pid": None, ...}`` when the plugin is not running.
        """
        if not self.is_running() or self.psutil_process is None:
            return {"running": False, "pid": None, "last_exit": self.last_exit}
        proc = self._measured or self.psutil_process  # s-pidns: the process running the plugin's code
        try:
            memory = proc.memory_info()
            stats: dict[str, Any] = {
                "running": True,
                "pid": self.psutil_process.pid,
                "cpu_percent": proc.cpu_percent(None),
                "memory_mb": memory.rss / _MB,
                "memory_percent": 100.0 * memory.rss / _total_memory(),
                "uptime_seconds": self.uptime_seconds,
                "num_threads": proc.num_threads(),
            }
            times = proc.cpu_times()
            stats["cpu_seconds"] = times.user + times.system
            with contextlib.suppress(psutil.Error, AttributeError):
                stats["num_fds"] = proc.num_fds()
            return stats
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess) as e:
            logger.debug("stats for '%s' unavailable: %s", self.plugin_name, e)
            return {"running": False, "pid": None, "error": str(e), "last_exit": self.last_exit}

    @property
    def uptime_seconds(self) -> float:
        if self._start_time is None or not self.is_running():
            return 0.0
        return time.monotonic() - self._start_time

    async def get_output(self, lines: int = 10) -> dict[str, str]:
        """The last ``lines`` lines of stdout and of stderr (kept even after the plugin exited)."""
        return {
            "stdout": "\n".join(self.output.tail("stdout", lines)),
            "stderr": "\n".join(self.output.tail("stderr", lines)),
        }

    # ------------------------------------------------------------------ internals

    def _on_exit(self, returncode: int) -> None:
        self.returncode = returncode
        if self._budget is not None:
            self._budget.process_exited()  # its last words (a traceback) are read now, not later
        logger.log(
            logging.INFO if returncode in (0, -signal.SIGTERM) else logging.WARNING,
            "Plugin '%s' (pid %s) %s",
            self.plugin_name,
            self.pid,
            describe_exit(returncode),
            extra={"plugin": self.plugin_name},
        )

    async def _wait_pipes_closed(self, timeout: float) -> None:
        # A grandchild holding the pipes open must not hang us: wait briefly, then let go.
        if self._pipes:
            await asyncio.wait([pipe.closed for pipe in self._pipes], timeout=timeout)

    def _close_pipes(self) -> None:
        for pipe in self._pipes:
            pipe.close()

    def _release(self) -> None:
        self._close_pipes()
        if self._exit is not None:
            self._exit.close()
        self.psutil_process = None
