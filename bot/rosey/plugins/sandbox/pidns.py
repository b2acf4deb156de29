"""Processes a plugin creates die with it: the plugin runs inside a PID namespace tied to it.

The parent-death signal (``PR_SET_PDEATHSIG``) is what kills a plugin when the supervisor dies,
even by SIGKILL. But it is not inherited across fork: a plugin allowed to create processes
(``max_processes > 0``) could leave children that outlive it, and so the supervisor. Measured
on 6.18 before this layer: SIGKILL of ``rosey run`` killed the plugin, and its child (which had
not even tried to hide) was reparented to init and went on running.

The kernel offers one guarantee that holds whatever the children do: when the init process of
a PID namespace dies, every other process in that namespace is killed (SIGKILL) and no new one
can enter. ``unshare(CLONE_NEWPID)`` does not move the caller, though: only the processes it
creates afterwards are born in the new namespace, and the kernel then refuses the caller any new
*thread* (``clone(CLONE_THREAD)`` fails with EINVAL while ``pid_ns_for_children`` is not the
caller's own namespace, kernel/fork.c). So the plugin's code must run in a process born inside.
Before any plugin code the launcher process (still privileged, single-threaded) therefore:

1. ``unshare(CLONE_NEWPID)``, and blocks the signals it relays (below);
2. forks the namespace's **init** (pid 1): a tiny process that reaps whatever is orphaned in the
   namespace (SIGCHLD ignored: the kernel reaps for it), closes every descriptor it inherited,
   drops its capabilities, and waits to be killed (``PR_SET_PDEATHSIG`` and a pidfd tie it to
   the supervised process). As pid 1 it ignores every signal sent from inside the namespace;
3. forks the **plugin process** (pid 2), which goes on with the rest of the sandbox and runs the
   plugin. It is an ordinary process of its namespace: threads work, signals have their usual
   default actions (pid 1 would ignore a SIGTERM it has no handler for), and its children are
   its own, to wait for as usual;
4. stays on as the **supervised process**, the one the supervisor started and knows by pid: it
   holds no descriptor and no capability, passes on every signal it relays (SIGTERM, SIGINT,
   SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT) to the plugin process, and when that exits
   SIGKILLs the init -- the kernel then kills every process left in the namespace, including one
   that double-forked or ignores every signal -- waits until the namespace is empty, and ends
   exactly as the plugin did: the same exit code, or the same signal (a plugin killed by SIGKILL
   is reported killed by SIGKILL). A SIGKILL of the supervised process itself (the supervisor's
   kill, or its death) kills the init through its parent-death signal, and so everything.

Seccomp denies unshare, setns, setsid and clone with namespace flags, so no child can leave the
namespace or the plugin's session. The supervisor measures the plugin process (CPU, memory:
:func:`plugin_process` finds it) and counts, for ``max_processes``, every process below the
supervised one except the init and the plugin process itself.

Inside the namespace the plugin's ``os.getpid()`` is 2 and ``os.getppid()`` 0 (its parent is
outside); its children see their own small pids and the plugin as their parent. Needs
CAP_SYS_ADMIN: root, or a user namespace of the plugin's own
(:mod:`~bot.rosey.plugins.sandbox.userns`). Where neither works the layer is reported
unavailable, and a restarted ``rosey run`` ends the leftovers it can prove are its own (see the
host's process record).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import select
import signal
from typing import NoReturn

from bot.rosey import linux
from bot.rosey.plugins.contract import ExitCode
from bot.rosey.plugins.sandbox import userns
from bot.rosey.plugins.sandbox.policy import SandboxPolicy
from bot.rosey.plugins.sandbox.report import ProtectionResult, ProtectionState

__all__ = ["NAME", "is_namespace_init", "plugin_process", "restrict"]

NAME = "pid-ns"

_CLONE_NEWPID = 0x20000000
_PR_SET_DUMPABLE = 4
#: What the supervised process passes on to the plugin process: the supervisor's SIGTERM, and
#: what an operator may send to the pid ``rosey status`` shows.
_RELAYED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCONT,
)


def is_namespace_init(status_text: str) -> bool:
    """Whether a /proc/PID/status text describes the init of a nested PID namespace.

    ``NSpid`` lists the pid in each namespace from the outermost; only one process per
    namespace can be pid 1 there, and a plugin's children cannot make a namespace of their own.
    """
    for line in status_text.splitlines():
        if line.startswith("NSpid:"):
            pids = line.split()[1:]
            return len(pids) > 1 and pids[-1] == "1"
    return False


def pid_is_namespace_init(pid: int, proc: str = "/proc") -> bool | None:
    """Whether process ``pid`` is the init of a nested PID namespace (see :func:`is_namespace_init`);
    None when it is gone."""
    try:
        with open(f"{proc}/{pid}/status") as f:
            return is_namespace_init(f.read())
    except OSError:
        return None


def plugin_process(supervised_pid: int, proc: str = "/proc") -> int | None:
    """Host side: the pid of the process running the plugin's code below ``supervised_pid``, or None.

    With this layer applied, the supervised process has exactly two children: its namespace's
    init and the plugin process. (Read from ``/proc``; the plugin cannot add a third: it is not
    their parent, and cannot create a namespace of its own.)
    """
    try:
        with open(f"{proc}/{supervised_pid}/task/{supervised_pid}/children") as f:
            children = [int(pid) for pid in f.read().split()]
    except (OSError, ValueError):
        children = _children_by_scan(supervised_pid, proc)  # a kernel without CONFIG_PROC_CHILDREN
    found = [pid for pid in children if pid_is_namespace_init(pid, proc) is False]  # None: gone meanwhile
    return found[0] if len(found) == 1 else None


def _children_by_scan(parent: int, proc: str) -> list[int]:
    children = []
    for entry in os.listdir(proc):
        if entry.isdigit():
            try:
                with open(f"{proc}/{entry}/stat") as f:
                    stat = f.read()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:
                    children.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return children


def _namespace_init(supervised: int) -> NoReturn:
    """The namespace's pid 1: reap orphans until the supervised process kills us (or dies)."""
    try:
        linux.set_parent_death_signal(signal.SIGKILL)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # orphans reparented here are reaped by the kernel
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)  # as pid 1, signals with no handler are ignored
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.closerange(0, supervised)
        os.closerange(supervised + 1, os.sysconf("SC_OPEN_MAX"))
        from bot.rosey.plugins.sandbox import capabilities

        capabilities.drop_all()
        capabilities.set_no_new_privs()
        select.select([supervised], [], [])  # readable once the supervised process has exited
    except BaseException:  # whatever happens, never return into the plugin's code
        pass
    os._exit(0)


def _relay(init: int, plugin: int) -> NoReturn:
    """The supervised process from now on: pass signals on, wait, end as the plugin ended."""
    status: int | None = None
    try:
        os.closerange(0, os.sysconf("SC_OPEN_MAX"))  # none of the plugin's pipes, no pidfd
        from bot.rosey.plugins.sandbox import capabilities

        capabilities.drop_all()
        capabilities.set_no_new_privs()
        waited = {*_RELAYED, signal.SIGCHLD}
        init_alive = True
        while status is None:
            number = signal.sigwaitinfo(waited).si_signo
            if number != signal.SIGCHLD:
                with contextlib.suppress(OSError):  # unreaped, so the pid cannot be another's yet
                    os.kill(plugin, number)
                continue
            while True:
                try:
                    pid, raw = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                if pid == plugin:
                    status = raw
                elif pid == init:
                    init_alive = False  # the kernel is killing the plugin: its SIGCHLD follows
        if init_alive:
            # Ending the init ends the namespace: every process the plugin left is killed, and
            # waitpid returns once the last one is gone.
            os.kill(init, signal.SIGKILL)
            os.waitpid(init, 0)
    except BaseException:  # never return into the plugin's code
        pass
    _end_as(status)


def _end_as(status: int | None) -> NoReturn:
    """Exit with the plugin's code, or die of the signal it died of."""
    if status is None:
        os._exit(ExitCode.SETUP_FAILED)
    if not os.WIFSIGNALED(status):
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    number = os.WTERMSIG(status)
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the plugin's core, if any, is its own
        linux.prctl(_PR_SET_DUMPABLE, 0)
    with contextlib.suppress(OSError, ValueError):
        signal.signal(number, signal.SIG_DFL)  # (SIGKILL cannot be changed, nor needs to be)
    with contextlib.suppress(OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (number,))
        os.kill(os.getpid(), number)
    os._exit(128 + number)


def _unshare() -> ProtectionResult | None:
    """``unshare(CLONE_NEWPID)``, from a user namespace of its own if need be; None on success."""
    unshared = linux.libc().unshare(ctypes.c_int(_CLONE_NEWPID)) == 0
    err = 0 if unshared else ctypes.get_errno()
    if err == errno.EPERM and not userns.entered():
        # Not root: a user namespace of its own gives CAP_SYS_ADMIN over its own namespaces.
        try:
            userns.enter()
            unshared = linux.libc().unshare(ctypes.c_int(_CLONE_NEWPID)) == 0
            err = 0 if unshared else ctypes.get_errno()
        except OSError as exc:
            err = exc.errno or errno.EPERM
    if unshared:
        return None
    # EPERM: no privilege; EINVAL: no PID namespaces; ENOSPC/EUSERS: too many user namespaces.
    missing = err in (errno.EPERM, errno.EINVAL, errno.ENOSPC, errno.EUSERS)
    state = ProtectionState.UNAVAILABLE if missing else ProtectionState.FAILED
    detail = f"unshare(CLONE_NEWPID): {os.strerror(err)}"
    if err == errno.EPERM:
        detail += " (needs root or unprivileged user namespaces); its children could outlive it"
    return ProtectionResult(name=NAME, state=state, detail=detail)


def restrict(policy: SandboxPolicy) -> ProtectionResult:
    """Go on as the plugin process of a new PID namespace that dies with it (see the module text).

    Returns in the plugin process only; the supervised process and the init never return.
    """
    if not policy.allow_subprocess:
        return ProtectionResult(
            name=NAME, state=ProtectionState.NOT_REQUESTED, detail="the plugin may not create processes"
        )
    if not policy.pid_namespace:
        return ProtectionResult(name=NAME, state=ProtectionState.NOT_REQUESTED, detail="pid_namespace off")
    try:
        supervised = os.pidfd_open(os.getpid())
    except (OSError, AttributeError) as exc:
        return ProtectionResult(name=NAME, state=ProtectionState.UNAVAILABLE, detail=f"pidfd_open: {exc}")
    # Blocked from before the forks: a SIGTERM that arrives meanwhile waits for the relay.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, (*_RELAYED, signal.SIGCHLD))
    try:
        refused = _unshare()
        if refused is not None:
            return refused
        try:
            init = os.fork()
        except OSError as exc:
            return ProtectionResult(name=NAME, state=ProtectionState.FAILED, detail=f"fork: {exc}")
        if init == 0:
            _namespace_init(supervised)
        try:
            plugin = os.fork()
        except OSError as exc:
            # Its children are still born in the namespace (and die with this process), but it
            # cannot start threads.
            detail = f"fork of the plugin process: {exc}; threads cannot be started"
            return ProtectionResult(name=NAME, state=ProtectionState.FAILED, detail=detail)
        if plugin != 0:
            _relay(init, plugin)
        # The plugin process. Tied to the supervised process like the init; if it is already
        # gone, so is the namespace's init (nobody would kill this process otherwise).
        linux.set_parent_death_signal(signal.SIGKILL)
        if select.select([supervised], [], [], 0)[0]:
            os._exit(ExitCode.SETUP_FAILED)
    finally:
        os.close(supervised)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    detail = (
        f"the plugin runs as pid {os.getpid()} of a PID namespace that dies with it; "
        "the supervised process relays its signals and its exit"
    )
    return ProtectionResult(name=NAME, state=ProtectionState.APPLIED, detail=detail)
