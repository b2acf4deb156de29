"""Host side of the zygote launcher: start the template process, ask it for plugin processes.

A plugin started by ``subprocess.Popen`` costs ~115 ms and ~19 MB of private memory, nearly all
of it importing asyncio, nats-py and the SDK -- the same code in every plugin. The zygote
(:mod:`bot.rosey.plugins.zygote_child`) imports that once and forks a child per plugin, so 50
plugins are ready in a fraction of a second and share the imported pages. See that module for
what the template holds and why; this one is what the host does:

* **Start** (:meth:`Zygote.start`): ``Popen`` of the template, from the thread that runs the
  event loop (the main thread of ``rosey run``), because ``PR_SET_PDEATHSIG`` fires when the
  *thread* that forked the child exits. Its environment is the plugins' minimal environment
  without anything per plugin (:func:`template_environment`): the host's secrets never reach it.
  Nothing waits for its imports: requests queue on the socket until it answers them.
* **Spawn** (:meth:`Zygote.spawn`): requests are serialized -- one writer at a time (an
  ``asyncio.Lock``), and the zygote handles them strictly in order, so answers are matched to
  requests by position -- but pipelined: the next request may leave while the previous one is
  being forked (at most the socket's queue, ~10 datagrams, is in flight; beyond that the
  sender waits for the socket to be writable). Each carries the launcher's argv, the child's
  full environment, its working directory, and -- with SCM_RIGHTS -- the write ends of its
  stdout/stderr pipes and of its readiness pipe. The answer is the child's pid *and a pidfd*
  opened by the zygote before it could possibly reap the child, so the host never races a
  recycled pid. The socket is read with ``loop.add_reader``: the event loop never blocks. A
  spawn cancelled after its request left kills the child as soon as its pid arrives.
* **Exit**: the plugin is the zygote's child, not ours, so only the zygote can ``waitpid`` it; it
  sends back ``(pid, status)`` and the host turns it into a Popen-style return code (negative
  signal numbers) through :class:`~bot.rosey.plugins.process.child_exit.ForeignChild`. Exit watching,
  ``describe_exit`` and the supervisor therefore behave exactly as for a ``Popen`` child.
* **Kill**: the host signals the child itself, through its pidfd, or its process group (every
  child calls ``setsid()``), with the same uid; no round trip through the zygote.
* **Zygote death**: its children die with it (their parent-death signal is SIGKILL). The host
  sees its socket close, fails the requests it still owed, reports each child's exit as
  ``-SIGKILL`` once its pidfd says it is gone, and starts a new zygote on the next spawn.
* **Stop** (:meth:`Zygote.aclose`): close the socket; the zygote exits on end-of-file and any
  child still running dies with it.

Without a running app (tests, the plugin-author harness) :func:`shared_zygote` gives one zygote
per event loop; a zygote whose loop has closed is stopped when the next one is made, and at exit.
"""

from __future__ import annotations

import array
import asyncio
import atexit
import collections
import contextlib
import functools
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bot.rosey.errors import ZygoteError
from bot.rosey.plugins.contract import Env
from bot.rosey.plugins.process.child_exit import ForeignChild, describe_exit
from bot.rosey.plugins.process.environment import minimal_environment
from bot.rosey.plugins.process.launchers import zygote_supported
from bot.rosey.plugins.zygote_child import MAX_FDS, MAX_REQUEST_BYTES, OP_SPAWN, decode_fds
from bot.rosey.process_record import ProcessRecord, ProcessRole

__all__ = ["Zygote", "ZygoteError", "shared_zygote", "template_environment", "zygote_supported"]

logger = logging.getLogger(__name__)

_BOOTSTRAP = "from bot.rosey.plugins.zygote_child import main; main()"
#: Variables of a plugin's environment that are about one plugin, so never in the template's.
_PER_PLUGIN = (
    *(Env.HOME, Env.TMPDIR, Env.PLUGIN_NAME, Env.DATA_DIR),
    *(Env.NATS_URL, Env.NATS_TOKEN, Env.NATS_USER, Env.NATS_PASSWORD),
)
_REPLY_BYTES = 4096
_STOP_TIMEOUT = 5.0


def template_environment(host_environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The zygote's environment: a plugin's minimal environment without anything about one plugin."""
    env = minimal_environment(
        plugin_name="zygote", data_dir=Path(os.sep), nats_url="", host_environ=host_environ
    )
    for name in _PER_PLUGIN:
        env.pop(name, None)
    return env


@dataclass
class _Pending:
    """A spawn request the zygote has not answered yet."""

    future: asyncio.Future[ForeignChild]
    stdout: IO[bytes]
    stderr: IO[bytes]
    args: list[str]


class _Template:
    """One zygote process: its socket, the answers it owes, the children it forked."""

    def __init__(self, loop: asyncio.AbstractEventLoop, python: str, env: dict[str, str]) -> None:
        self.loop = loop
        self.pending: collections.deque[_Pending] = collections.deque()
        self.children: dict[int, ForeignChild] = {}
        self.alive = True
        self.answered = False
        self.greeted = asyncio.Event()  # set at the zygote's hello (imports done), or when it is lost
        self.exited = asyncio.Event()
        self.returncode: int | None = None
        host_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.popen = subprocess.Popen(
                [python, "-s", "-P", "-c", _BOOTSTRAP, str(zygote_end.fileno()), str(os.getpid())],
                env=env,
                cwd=os.sep,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(zygote_end.fileno(),),
                start_new_session=True,  # no terminal signals; plugins stop through the host
            )
        except BaseException:
            host_end.close()
            raise
        finally:
            zygote_end.close()
        self.sock = host_end
        self.sock.setblocking(False)
        self.pid = self.popen.pid
        self.pidfd: int | None = os.pidfd_open(self.pid)
        loop.add_reader(self.sock.fileno(), self._on_readable)
        loop.add_reader(self.pidfd, self._on_zygote_exit)
        logger.debug("zygote started (pid %d)", self.pid)

    # ------------------------------------------------------------------ requests

    async def request(self, payload: bytes, fds: list[int], pending: _Pending) -> None:
        """Send one spawn request; the answer resolves ``pending.future``."""
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        while True:
            if not self.alive:
                raise ZygoteError(self._death())
            try:
                self.sock.sendmsg([payload], ancillary)
            except BlockingIOError:
                await self._writable()
                continue
            except OSError as exc:
                self._lost()
                raise ZygoteError(self._death()) from exc
            # Queued only once sent (no await in between): answers are matched in order.
            self.pending.append(pending)
            return

    async def _writable(self) -> None:
        writable: asyncio.Future[None] = self.loop.create_future()
        fd = self.sock.fileno()
        self.loop.add_writer(fd, _resolve, writable, None)
        try:
            await writable
        finally:
            if self.alive:
                self.loop.remove_writer(fd)

    def _on_readable(self) -> None:
        while self.alive:
            try:
                data, ancdata, _flags, _ = self.sock.recvmsg(
                    _REPLY_BYTES, socket.CMSG_SPACE(4), socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                return
            except OSError:
                data, ancdata = b"", []
            fds = decode_fds(ancdata)
            if not data and not fds:
                self._lost()
                return
            try:
                message = json.loads(data)
            except ValueError:
                logger.error("zygote (pid %d) sent an unreadable message: %r", self.pid, data[:200])
                for fd in fds:
                    os.close(fd)
                continue
            self._handle(message, fds)

    def _handle(self, message: dict[str, Any], fds: list[int]) -> None:
        if "hello" in message:
            self.answered = True
            self.greeted.set()
            return
        if "exit" in message:
            child = self.children.pop(message["exit"], None)
            if child is not None:
                child.report(os.waitstatus_to_exitcode(message["status"]))
            return
        self.answered = True
        if not self.pending:
            logger.error("zygote (pid %d) answered a request nobody made: %r", self.pid, message)
            for fd in fds:
                os.close(fd)
            return
        pending = self.pending.popleft()
        if "pid" in message and len(fds) == 1:
            child = ForeignChild(
                message["pid"], fds[0], stdout=pending.stdout, stderr=pending.stderr, args=pending.args
            )
            self.children[child.pid] = child
            if pending.future.done():  # the spawn was cancelled: nobody will ever watch this child
                child.kill()
                _close_quietly(pending.stdout, pending.stderr)
            else:
                pending.future.set_result(child)
            return
        for fd in fds:
            os.close(fd)
        _close_quietly(pending.stdout, pending.stderr)
        if not pending.future.done():
            reason = message.get("error", message)
            pending.future.set_exception(ZygoteError(f"the zygote could not start the plugin: {reason}"))

    # ------------------------------------------------------------------ death and shutdown

    def _death(self) -> str:
        if not self.answered:
            how = f" ({describe_exit(self.returncode)})" if self.returncode is not None else ""
            return f"the zygote process (pid {self.pid}) exited before starting any plugin{how}; see stderr"
        return f"the zygote process (pid {self.pid}) is gone"

    def _lost(self) -> None:
        """The socket closed: fail what is owed, and report children's exits as they vanish."""
        if not self.alive:
            return
        self.alive = False
        if not self.loop.is_closed():
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self.sock.fileno())
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_writer(self.sock.fileno())
            self.greeted.set()
        self.sock.close()
        while self.pending:
            pending = self.pending.popleft()
            _close_quietly(pending.stdout, pending.stderr)
            if not pending.future.done():
                pending.future.set_exception(ZygoteError(self._death()))
        children, self.children = self.children, {}
        if children:
            logger.warning(
                "zygote (pid %d) is gone; its %d plugin process(es) die with it (SIGKILL)",
                self.pid,
                len(children),
            )
        for child in children.values():
            # PR_SET_PDEATHSIG is SIGKILL: that is what ends each of them now.
            if self.loop.is_closed():
                child.close()
            else:
                child.orphaned(-signal.SIGKILL, self.loop)

    def _on_zygote_exit(self) -> None:
        returncode = self.popen.poll()
        if returncode is None:
            return
        self.returncode = returncode
        self._close_pidfd()
        self.exited.set()
        log = logger.debug if not self.alive else logger.warning  # not alive: we closed it
        log("zygote (pid %d) %s", self.pid, describe_exit(returncode))
        if self.alive:
            # Its last words are still queued (answers, exit statuses of children it reaped):
            # read them before declaring the rest lost. Its socket was closed before it
            # became reapable, so this ends at end-of-file.
            self._on_readable()
        self._lost()

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            if not self.loop.is_closed():
                with contextlib.suppress(ValueError, OSError):
                    self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None

    async def aclose(self) -> None:
        children = list(self.children.values())
        self._lost()  # closing our end is the stop signal: the zygote exits on end-of-file
        if self.pidfd is not None:
            try:
                await asyncio.wait_for(self.exited.wait(), _STOP_TIMEOUT)
            except TimeoutError:
                logger.warning("zygote (pid %d) did not exit within %gs, killing it", self.pid, _STOP_TIMEOUT)
                self.close()
        # Children still running die with it; wait (bounded) until each exit is reported.
        gone = []
        for child in children:
            if child.returncode is None:
                future: asyncio.Future[int] = self.loop.create_future()
                child.add_exit_callback(functools.partial(_resolve, future))
                gone.append(future)
        if gone:
            await asyncio.wait(gone, timeout=_STOP_TIMEOUT)

    def close(self) -> None:
        """Synchronous teardown (no loop needed): kill the zygote and reap it, bounded."""
        self._lost()
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            if self.pidfd is not None:
                select.select([self.pidfd], [], [], _STOP_TIMEOUT)
            if self.popen.poll() is None:
                self.popen.wait()  # SIGKILLed: a matter of a moment
        self.returncode = self.popen.returncode
        self._close_pidfd()
        if not self.loop.is_closed():
            self.exited.set()


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _close_quietly(*files: IO[bytes]) -> None:
    for file in files:
        with contextlib.suppress(OSError):
            file.close()


class Zygote:
    """A pre-imported template process that forks plugin processes on request.

    ``start()`` (optional: the first spawn starts it) must run on the event loop's thread;
    ``await spawn(...)`` returns a :class:`ForeignChild` as soon as the child exists;
    ``await aclose()`` stops the zygote (and any child still alive). A zygote that died is
    replaced by the next ``spawn()``.
    """

    def __init__(
        self,
        python_executable: str | None = None,
        *,
        host_environ: Mapping[str, str] | None = None,
        record: ProcessRecord | None = None,
    ) -> None:
        self.python_executable = python_executable or sys.executable
        self.record = record  # each zygote process started is recorded there (a restart too)
        self._host_environ = host_environ
        self._template: _Template | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False
        self.starts = 0  # how many zygote processes were started (restarts included)
        _ALL.add(self)

    def __repr__(self) -> str:
        return f"<Zygote pid={self.pid} starts={self.starts}>"

    @property
    def pid(self) -> int | None:
        """The current zygote process's pid, or None if none is running."""
        return self._template.pid if self._template is not None and self._template.alive else None

    def start(self) -> None:
        """Start the template process unless it is running (it imports while we go on)."""
        if self._closed:
            raise ZygoteError("this zygote was closed")
        loop = asyncio.get_running_loop()
        if self._template is not None and self._template.alive:
            if self._template.loop is not loop:
                raise ZygoteError("this zygote belongs to another event loop")
            return
        self._template = _Template(loop, self.python_executable, template_environment(self._host_environ))
        self.starts += 1
        if self.record is not None:
            self.record.started(ProcessRole.ZYGOTE, "zygote", self._template.pid)

    async def spawn(
        self,
        target: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | os.PathLike[str],
        pass_fds: Mapping[int, int] | None = None,
    ) -> ForeignChild:
        """Fork a plugin process running ``launcher`` with ``target`` (its argv).

        ``env`` is its whole environment; ``cwd`` an absolute directory; ``pass_fds`` maps the
        numbers the child should see (3 and up) to our file descriptors, which stay ours to
        close. Its stdout and stderr are new pipes, readable as ``child.stdout``/``child.stderr``.
        Raises :class:`ZygoteError` (an OSError) if the zygote cannot fork it.
        """
        extra = dict(pass_fds or {})
        if any(number < 3 for number in extra) or len(extra) + 2 > MAX_FDS:
            raise ValueError(f"pass_fds must map at most {MAX_FDS - 2} numbers >= 3, got {sorted(extra)}")
        if not os.path.isabs(cwd):
            raise ValueError(f"cwd must be absolute, got {cwd!r}")
        request = {"target": list(target), "env": dict(env), "cwd": os.fspath(cwd), "fds": [1, 2, *extra]}
        payload = OP_SPAWN + json.dumps(request).encode()
        if len(payload) > MAX_REQUEST_BYTES:
            raise ZygoteError(
                f"spawn request of {len(payload)} bytes exceeds {MAX_REQUEST_BYTES} (environment too large)"
            )
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # requests leave one at a time; the zygote answers them in order
            self.start()
            template = self._template
            assert template is not None
            out_read, out_write = os.pipe()
            err_read, err_write = os.pipe()
            pending = _Pending(
                future=template.loop.create_future(),
                stdout=os.fdopen(out_read, "rb"),  # handed to the output capture, which closes it
                stderr=os.fdopen(err_read, "rb"),
                args=list(target),
            )
            try:
                await template.request(payload, [out_write, err_write, *extra.values()], pending)
            except BaseException:
                _close_quietly(pending.stdout, pending.stderr)
                raise
            finally:
                os.close(out_write)
                os.close(err_write)
        # Not under the lock: the next request may leave while this one is being forked.
        try:
            return await pending.future
        except BaseException:
            if not pending.future.done():
                pending.future.cancel()  # the answer, when it comes, kills the orphan
            elif not pending.future.cancelled() and pending.future.exception() is None:
                pending.future.result().kill()  # answered, but whoever asked is gone
                _close_quietly(pending.stdout, pending.stderr)
            raise

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Start the zygote if needed and wait until it has finished its imports (benchmarks, warm-up)."""
        self.start()
        template = self._template
        assert template is not None
        await asyncio.wait_for(template.greeted.wait(), timeout)
        if not template.answered:
            raise ZygoteError(template._death())

    async def aclose(self) -> None:
        """Stop the zygote (children still running die with it) and wait until it is gone."""
        self._closed = True
        _ALL.discard(self)
        template, self._template = self._template, None
        if template is not None:
            if template.loop.is_closed():
                template.close()
            else:
                await template.aclose()

    def close(self) -> None:
        """Synchronous stop (at exit, or when this zygote's loop is gone)."""
        self._closed = True
        _ALL.discard(self)
        template, self._template = self._template, None
        if template is not None:
            template.close()


_ALL: weakref.WeakSet[Zygote] = weakref.WeakSet()
_SHARED: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], Zygote]] = {}


def shared_zygote() -> Zygote:
    """The zygote of the running event loop, for plugin processes whose options name none."""
    loop = asyncio.get_running_loop()
    for key, (ref, zygote) in list(_SHARED.items()):
        other = ref()
        if other is None or other.is_closed():
            del _SHARED[key]
            zygote.close()
    entry = _SHARED.get(id(loop))
    if entry is not None and entry[0]() is loop:
        return entry[1]
    zygote = Zygote()
    _SHARED[id(loop)] = (weakref.ref(loop), zygote)
    return zygote


@atexit.register
def _close_all_zygotes() -> None:
    for zygote in list(_ALL):
        with contextlib.suppress(Exception):
            zygote.close()
