"""The zygote: a template Python process that forks one plugin process per request.

Why: a plugin started with ``python -m bot.rosey.plugins.launcher`` spends ~100 ms importing
asyncio, nats-py and the SDK, and keeps ~19 MB of private memory for code that is identical in
every plugin. The zygote imports all of it once; each plugin is then an ``os.fork()`` of it
(~1 ms) and shares those pages copy-on-write with the zygote and every sibling.

This module is the *plugin side* of the zygote and follows the plugin process's rules: it
imports only what a plugin imports (asyncio, nats, ``bot.rosey.core.*``, the SDK, the launcher
and the sandbox) and nothing host-side -- not psutil, not the config, not the runner -- because
everything the zygote holds is copied into every plugin it forks. The host side is
:mod:`bot.rosey.plugins.process.zygote`, which starts this as::

    python -s -P -c "from bot.rosey.plugins.zygote_child import main; main()" SOCKET_FD HOST_PID

with the plugins' environment minus anything per plugin (no name, no data dir, no NATS
identity, no host variable except PATH/locale/TZ) and ``/`` as working directory. That is the
``-I`` hygiene without ``-I`` itself: ``-s`` keeps the host user's site-packages out, ``-P``
keeps the working directory off ``sys.path``, and the environment is entirely ours. Its
``PYTHON*`` variables are the very ones every plugin gets, so the interpreter the children
inherit (stdio encoding and buffering, bytecode writing, ``sys.path``, ``sys.flags``) is
configured exactly as a freshly spawned plugin's; ``-I``/``-E`` would have made the children
ignore the environment for good (``sys.flags.ignore_environment``), unlike a spawned plugin.

Rules the template keeps, and why:

* No thread and no event loop, ever: ``fork()`` copies only the calling thread, and the
  sandbox's per-thread protections (Landlock, no_new_privs) require a single-threaded child.
  The loop below is a blocking ``poll()`` on the socket and on one pidfd per child: no
  timers, no signal handlers (which the children would inherit), no SIGCHLD.
* No secrets: the zygote never reads the config or any credential. A spawn request (which
  carries the child's full environment, NATS password included) is received into one
  preallocated buffer and is *never decoded by the zygote*; the zygote forks and zeroes the
  buffer, and only the child parses it. A child forked later therefore finds no trace of an
  earlier sibling's credentials in the memory it inherited. (The request's bytes pass
  through the kernel only.)
* Dies with the host, and only with the host: ``PR_SET_PDEATHSIG`` ties the zygote to the host
  thread that started it, and each child to the zygote; a child whose zygote died before its
  ``prctl`` exits. Otherwise the zygote ends when the host closes the socket. It ignores
  SIGTERM, SIGINT and SIGHUP, because its death kills every plugin at once: a service manager
  that sends SIGTERM to the whole process group or cgroup must not cut short the graceful stop
  the host is running. Each child restores the dispositions a fresh interpreter has.
* Memory: ``gc.disable()`` before the imports (a collection would leave freed holes that the
  children's allocations fill, copying those pages) and ``gc.freeze()`` after them (the
  children's collector never walks, so never dirties, the template's objects); the pure code
  each child runs before its event loop is run once here (:func:`_warm_up`). What a child
  still copies (~5-6 MB of the template's ~22 MB) comes from CPython 3.11 itself: every object
  a child touches has its reference count written, and every function it calls has its code
  object written (warm-up counter, then quickening). Only ~0.4 MB are objects the child
  really creates; the rest stays shared with the zygote and every sibling.

Protocol (AF_UNIX SOCK_SEQPACKET socketpair, one message per datagram):

* host -> zygote: ``b"S" + JSON {"target": argv, "env": {...}, "cwd": path, "fds": [1, 2, 3]}``
  with SCM_RIGHTS file descriptors, one per entry of ``"fds"`` (the numbers they get in the
  child). ``argv`` is the launcher's: ``["--path", FILE]`` or ``["--entry", "mod:Class"]``.
* zygote -> host: ``{"hello": pid}`` once, after the imports; then, per request in order,
  ``{"pid": N}`` with the child's pidfd attached, or ``{"error": text}``; and whenever it
  reaps a child, ``{"exit": N, "status": S}`` with the raw ``waitpid`` status.

Known differences from a spawned plugin, all by construction of a fork: every child shares
the zygote's string-hash secret and address-space layout (a plugin that reads its own memory
learns its siblings', which weakens hash-flooding and ASLR defences between plugins, not
between a plugin and the host); ``/proc/PID/environ`` shows the zygote's (secret-free) start-up
environment, not the plugin's (``os.environ`` and libc's ``environ`` are right);
``/proc/PID/cmdline`` shows the zygote's command line; logging's ``relativeCreated``
counts from the zygote's start; an entry-point plugin's ``__main__`` module is the zygote's
bootstrap rather than the launcher module.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import gc
import io
import json
import os
import select
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from bot.rosey.plugins.contract import Env, ExitCode

__all__ = ["MAX_FDS", "MAX_REQUEST_BYTES", "OP_SPAWN", "decode_fds", "main"]

#: First byte of a spawn request.
OP_SPAWN = b"S"
#: Largest request: the environment and the sandbox policy of one plugin fit with room to spare.
MAX_REQUEST_BYTES = 128 * 1024
#: Most file descriptors one request may carry (stdout, stderr, readiness, and a few spare).
MAX_FDS = 8

_FD_SIZE = array.array("i").itemsize
#: Signals the zygote ignores (see above); the children get back what the zygote started with.
_IGNORED_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")
_inherited_handlers: dict[int, Any] = {}
_LOCALE_VARIABLES = (Env.LC_ALL, Env.LC_CTYPE, Env.LANG)


def decode_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The file descriptors of SCM_RIGHTS ancillary data (both sides use it)."""
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % _FD_SIZE])
    return list(fds)


def _preload() -> None:
    """Import what every plugin imports, so that the children share it instead of re-importing it."""
    import argparse  # noqa: F401  - the launcher's argv
    import asyncio
    import asyncio.unix_events  # noqa: F401
    import concurrent.futures.thread  # noqa: F401  - asyncio's default executor (getaddrinfo)
    import encodings.idna  # noqa: F401  - host names on connect
    import logging  # noqa: F401
    import random  # noqa: F401
    import runpy  # noqa: F401
    import ssl  # noqa: F401
    import uuid  # noqa: F401

    import nats
    import nats.js  # noqa: F401

    import bot.rosey.core.event_bus
    import bot.rosey.core.events
    import bot.rosey.core.subjects
    import bot.rosey.linux
    import bot.rosey.plugins.launcher
    import bot.rosey.plugins.plugin_interface
    import bot.rosey.plugins.sandbox.capabilities
    import bot.rosey.plugins.sandbox.landlock
    import bot.rosey.plugins.sandbox.mountns
    import bot.rosey.plugins.sandbox.pidns
    import bot.rosey.plugins.sandbox.rlimits
    import bot.rosey.plugins.sandbox.seccomp
    import bot.rosey.plugins.sandbox.userns  # noqa: F401

    _warm_up()
    from bot.rosey.plugins import zygote_warmup  # issue 17: an event loop and a connection, once

    zygote_warmup.rehearse()
    gc.freeze()


def _warm_up() -> None:
    """Run, once, the pure code every child runs before its event loop exists.

    CPython 3.11 rewrites a function's bytecode in place ("quickening") after its first few
    calls; done here, it is done once in the shared pages instead of once per child in a private
    copy. Only code without side effects: argv parsing, JSON, parsing a sandbox policy and
    assembling its seccomp filter (nothing is applied), formatting a log record (no handler is
    configured, so no logging state changes). Measured: ~0.3 MB less copied per child. (Running
    an event loop and a NATS connection here would save ~0.35 MB more; the zygote has no loop.)
    """
    import logging

    from bot.rosey.plugins import launcher
    from bot.rosey.plugins.sandbox import SandboxPolicy, rlimits, seccomp

    arch = seccomp.host_arch()
    for _ in range(10):  # past the quickening threshold
        policy = SandboxPolicy.from_json(SandboxPolicy(read_paths=(os.sep,), connect_ports=(4222,)).to_json())
        rlimits.planned_limits(policy)
        if arch is not None:
            seccomp.build_program(arch, policy, os.getpid())
        launcher.parse_target(["--path", os.sep])
        launcher.parse_target(["--entry", "package.module:Plugin"])
        launcher.parse_target(["--path=" + os.sep])  # the argparse path, for any other argv
        json.loads(json.dumps({"target": ["--path", os.sep], "env": {"A": "b"}, "fds": [1, 2, 3]}))
        record = logging.LogRecord("warm", logging.INFO, __file__, 0, "%s", ("up",), None)
        logging.Formatter("%(asctime)s - Warm - %(levelname)s - %(message)s").format(record)


@dataclass
class _Forked:
    """What a freshly forked child takes with it out of the serve loop."""

    buffer: bytearray
    length: int
    fds: list[int]
    zygote_pid: int
    sock: socket.socket


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([json.dumps(message).encode()], ancillary)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _serve(sock: socket.socket) -> _Forked | None:
    """Answer spawn requests until the host goes away (None) or, in a forked child, return its request."""
    buffer = bytearray(MAX_REQUEST_BYTES)
    view = memoryview(buffer)
    zygote_pid = os.getpid()
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    children: dict[int, int] = {}  # pidfd -> pid
    try:
        return _loop(sock, buffer, view, poller, children, zygote_pid)
    except (BrokenPipeError, ConnectionResetError):
        return None  # the host is gone


def _loop(
    sock: socket.socket,
    buffer: bytearray,
    view: memoryview,
    poller: select.poll,
    children: dict[int, int],
    zygote_pid: int,
) -> _Forked | None:
    ancillary_size = socket.CMSG_SPACE(MAX_FDS * _FD_SIZE)
    sock_fd = sock.fileno()
    _send(sock, {"hello": zygote_pid})
    while True:
        for fd, _events in poller.poll():
            if fd != sock_fd:
                _reap(sock, poller, children, fd)
                continue
            length, ancdata, flags, _ = sock.recvmsg_into([view], ancillary_size, socket.MSG_CMSG_CLOEXEC)
            fds = decode_fds(ancdata)
            if length == 0 and not fds:
                return None  # the host closed its end: exit, and the children die with us
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or length < 1 or buffer[0] != OP_SPAWN[0]:
                _close_all(fds)
                view[:length] = bytes(length)
                _send(sock, {"error": "malformed or oversized spawn request"})
                continue
            error = ""
            try:
                pid = os.fork()
            except OSError as exc:
                pid, error = -1, f"fork failed: {exc}"
            if pid == 0:
                return _Forked(buffer=buffer, length=length, fds=fds, zygote_pid=zygote_pid, sock=sock)
            # Parent: forget the request at once, so the next child does not inherit it.
            _close_all(fds)
            view[:length] = bytes(length)
            if pid < 0:
                _send(sock, {"error": error})
                continue
            try:
                pidfd = os.pidfd_open(pid)
            except OSError as exc:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                _send(sock, {"error": f"pidfd_open failed: {exc}"})
                continue
            children[pidfd] = pid
            poller.register(pidfd, select.POLLIN)
            _send(sock, {"pid": pid}, [pidfd])


def _reap(sock: socket.socket, poller: select.poll, children: dict[int, int], pidfd: int) -> None:
    pid = children[pidfd]
    reaped, status = os.waitpid(pid, os.WNOHANG)
    if reaped == 0:
        return  # not yet (the pidfd is readable from the exit on; waitpid will succeed)
    poller.unregister(pidfd)
    os.close(pidfd)
    del children[pidfd]
    _send(sock, {"exit": pid, "status": status})


# ---------------------------------------------------------------------- in the forked child


def _install_fds(received: list[int], targets: list[int]) -> None:
    """Put each received fd at its target number and close every other descriptor but stdin."""
    if len(received) != len(targets):
        raise OSError(f"expected {len(targets)} file descriptors, got {len(received)}")
    # Move out of the way first: a received fd may sit on another one's target number.
    high = max([*targets, 2]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, high) for fd in received]
    for fd, target in zip(moved, targets, strict=True):
        os.dup2(fd, target)  # inheritable, like Popen's pass_fds
    keep = sorted({0, *targets})
    low = 0
    for fd in keep:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _reopen_stdio(env: dict[str, str]) -> None:
    """Rebuild sys.stdout/stderr when the plugin's PYTHONIOENCODING or PYTHONUNBUFFERED differ."""
    wanted = (env.get(Env.PYTHONIOENCODING, ""), bool(env.get(Env.PYTHONUNBUFFERED)))
    inherited = (os.environ.get(Env.PYTHONIOENCODING, ""), bool(os.environ.get(Env.PYTHONUNBUFFERED)))
    if wanted == inherited:
        return  # the streams CPython built for the zygote are exactly what this plugin gets
    encoding, _, errors = wanted[0].partition(":")
    unbuffered = wanted[1]
    for fd, name, default_errors in ((1, "stdout", None), (2, "stderr", "backslashreplace")):
        old = getattr(sys, name)
        raw = io.FileIO(fd, "w", closefd=False)
        raw.name = f"<{name}>"
        binary: Any = raw if unbuffered else io.BufferedWriter(raw)
        stream = io.TextIOWrapper(
            binary,
            encoding=encoding or old.encoding,
            errors=default_errors or errors or old.errors,
            newline="\n",
            write_through=unbuffered,
        )
        stream.mode = "w"  # type: ignore[misc]
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _replace_environment(env: dict[str, str]) -> None:
    """Make the environment exactly ``env``, and refresh what the interpreter derived from the old one."""
    zygote_pythonpath = os.environ.get(Env.PYTHONPATH, "")
    zygote_locale = [os.environ.get(name) for name in _LOCALE_VARIABLES]
    zygote_tz = os.environ.get(Env.TZ)
    _reopen_stdio(env)
    # Changes only: most variables (PATH, locale, PYTHON*) are the zygote's own already. Goes
    # through putenv()/unsetenv(), so C code sees the same environment as Python.
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
    sys.dont_write_bytecode = bool(env.get(Env.PYTHONDONTWRITEBYTECODE))
    # sys.path as `python -s -P -m bot.rosey.plugins.launcher` builds it: $PYTHONPATH, then the
    # rest (stdlib, site-packages); never the working directory, which is the plugin's data dir
    # (writable by the plugin). The launcher puts a plugin file's directory first.
    inherited = [p for p in zygote_pythonpath.split(os.pathsep) if p]
    rest = [p for p in sys.path if p not in inherited]
    wanted = [p for p in env.get(Env.PYTHONPATH, "").split(os.pathsep) if p]
    sys.path[:] = [*wanted, *rest]
    if env.get(Env.TZ) != zygote_tz:
        import time

        time.tzset()
    if [env.get(name) for name in _LOCALE_VARIABLES] != zygote_locale:
        import locale

        with contextlib.suppress(locale.Error):
            locale.setlocale(locale.LC_CTYPE, "")  # what the interpreter does at start-up
    if "tempfile" in sys.modules:
        setattr(sys.modules["tempfile"], "tempdir", None)  # noqa: B010 - cached from TMPDIR on first use


def _become_plugin(forked: _Forked) -> Any:
    """In the child: own session, parent death signal, fds, environment, cwd; returns the launcher target."""
    from bot.rosey.plugins import launcher

    gc.enable()  # the template's objects are frozen: only the child's own are ever collected
    os.setsid()  # own session and process group, as Popen(start_new_session=True)
    launcher.die_with_parent(forked.zygote_pid)
    for number, handler in _inherited_handlers.items():
        signal.signal(number, handler)  # SIG_DFL, or Python's KeyboardInterrupt for SIGINT
    forked.sock.close()
    request = json.loads(bytes(forked.buffer[1 : forked.length]))
    forked.buffer[: forked.length] = bytes(forked.length)
    _install_fds(forked.fds, request["fds"])
    try:
        os.chdir(request["cwd"])
        _replace_environment(request["env"])
    except OSError as exc:
        sys.stderr.write(f"rosey zygote: cannot prepare the plugin process: {exc}\n")
        sys.stderr.flush()
        os._exit(ExitCode.SETUP_FAILED)
    import random

    random.seed()  # os.fork() reseeds too (register_at_fork); explicit, so it never depends on that
    target = launcher.parse_target(request["target"])
    sys.argv = [launcher.__file__, *request["target"]]  # as `python -m ...launcher ARGS`; a file resets it
    return target


def main() -> None:
    """Entry point of the zygote process (see the module docstring for argv)."""
    gc.disable()  # no collection may leave freed holes for the children to fill (and so copy)
    sock_fd, host_pid = int(sys.argv[1]), int(sys.argv[2])
    from bot.rosey.plugins import launcher

    launcher.die_with_parent(host_pid)
    for name in _IGNORED_SIGNALS:
        number = getattr(signal, name)
        _inherited_handlers[number] = signal.signal(number, signal.SIG_IGN)
    _preload()
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        sys.stderr.write(f"rosey zygote: {threads} threads after the imports; a fork would lose them\n")
        sys.exit(ExitCode.SETUP_FAILED)
    forked = _serve(socket.socket(fileno=sock_fd))
    if forked is None:
        return
    target = _become_plugin(forked)
    del forked
    # From here on this is a plugin process, which ends exactly as a spawned one: in run_target
    # once the plugin has stopped, or by the interpreter for what run_target lets propagate.
    launcher.run_target(target)
