"""Processes a plugin creates die with it: a PID namespace whose init is tied to the plugin.

The parent-death signal (``PR_SET_PDEATHSIG``) is what kills a plugin when the supervisor dies,
even by SIGKILL. But it is not inherited across fork: a plugin allowed to create processes
(``max_processes > 0``) could leave children that outlive it, and so the supervisor. Measured
on 6.18 before this layer: SIGKILL of ``rosey run`` killed the plugin, and its child (which had
not even tried to hide) was reparented to init and went on running.

The kernel offers one guarantee that holds whatever the children do: when the init process of
a PID namespace dies, every other process in that namespace is killed (SIGKILL) and no new one
can enter. So before any plugin code the plugin process (still privileged, single-threaded):

1. ``unshare(CLONE_NEWPID)``: the plugin itself stays where it is (same pid, same signals, the
   supervisor sees no difference), but every process it creates from now on lives in a new
   namespace;
2. forks that namespace's init: a tiny process that does nothing but wait for the plugin's exit
   (on a pidfd, with ``PR_SET_PDEATHSIG`` as a second tie) and then exit, and meanwhile reaps
   whatever is orphaned in the namespace (SIGCHLD ignored: the kernel reaps for it). It closes
   every descriptor it inherited and drops its capabilities.

When the plugin dies -- stopped, crashed, or killed because the supervisor died -- its init
exits and the kernel kills every process the plugin ever started, including one that called
setsid(), double-forked, or ignores every signal. Seccomp denies unshare, setns and clone with
namespace flags, so no child can leave the namespace. The init counts as one of the plugin's
processes in /proc but is not one of its own: the watchdog leaves it out of ``max_processes``
(it is the namespace's pid 1, see :func:`is_namespace_init`).

Inside the namespace a child sees its own pids (``os.getpid()`` is small) and ``getppid()`` is
0 for the plugin's direct children (their parent is outside the namespace). The plugin can
still wait for them as usual. Needs CAP_SYS_ADMIN: root, or a user namespace of the plugin's
own (:mod:`~bot.rosey.plugins.sandbox.userns`). Where neither works the layer is reported
unavailable, and a restarted ``rosey run`` ends the leftovers it can prove are its own (see
the host's process record).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal

from bot.rosey import linux
from bot.rosey.plugins.sandbox import userns
from bot.rosey.plugins.sandbox.policy import SandboxPolicy
from bot.rosey.plugins.sandbox.report import ProtectionResult, ProtectionState

__all__ = ["NAME", "is_namespace_init", "restrict"]

NAME = "pid-ns"

_CLONE_NEWPID = 0x20000000


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


def _namespace_init(plugin_pidfd: int) -> None:
    """The namespace's pid 1: wait for the plugin to go, then go (taking the namespace along)."""
    try:
        linux.set_parent_death_signal(signal.SIGKILL)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # orphans reparented here are reaped by the kernel
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)  # as pid 1, signals with no handler are ignored
        os.closerange(0, plugin_pidfd)
        os.closerange(plugin_pidfd + 1, os.sysconf("SC_OPEN_MAX"))
        from bot.rosey.plugins.sandbox import capabilities

        capabilities.drop_all()
        capabilities.set_no_new_privs()
        select.select([plugin_pidfd], [], [])  # readable once the plugin has exited (or already has)
    except BaseException:  # whatever happens, never return into the plugin's code
        pass
    os._exit(0)


def restrict(policy: SandboxPolicy) -> ProtectionResult:
    """Put every process the plugin will create into a namespace that dies with it."""
    if not policy.allow_subprocess:
        return ProtectionResult(
            name=NAME, state=ProtectionState.NOT_REQUESTED, detail="the plugin may not create processes"
        )
    if not policy.pid_namespace:
        return ProtectionResult(name=NAME, state=ProtectionState.NOT_REQUESTED, detail="pid_namespace off")
    try:
        pidfd = os.pidfd_open(os.getpid())
    except (OSError, AttributeError) as exc:
        return ProtectionResult(name=NAME, state=ProtectionState.UNAVAILABLE, detail=f"pidfd_open: {exc}")
    try:
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
        if not unshared:
            # EPERM: no privilege; EINVAL: no PID namespaces; ENOSPC/EUSERS: too many user namespaces.
            missing = err in (errno.EPERM, errno.EINVAL, errno.ENOSPC, errno.EUSERS)
            state = ProtectionState.UNAVAILABLE if missing else ProtectionState.FAILED
            detail = f"unshare(CLONE_NEWPID): {os.strerror(err)}"
            if err == errno.EPERM:
                detail += " (needs root or unprivileged user namespaces); its children could outlive it"
            return ProtectionResult(name=NAME, state=state, detail=detail)
        try:
            pid = os.fork()
        except OSError as exc:
            return ProtectionResult(name=NAME, state=ProtectionState.FAILED, detail=f"fork: {exc}")
        if pid == 0:
            _namespace_init(pidfd)  # never returns
    finally:
        os.close(pidfd)
    detail = f"child processes live in a PID namespace whose init (pid {pid}) dies with the plugin"
    return ProtectionResult(name=NAME, state=ProtectionState.APPLIED, detail=detail)
