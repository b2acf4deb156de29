"""Linux's libc through ctypes, loaded once per process: ``prctl(2)``, raw ``syscall(2)``, PDEATHSIG.

Both sides use it: the host (the nats-server's parent-death signal, the sandbox probe) and every
plugin process (its own parent-death signal, the sandbox layers). Standard library only, so a
plugin process may import it. The handle is cached: a zygote loads it once, and each plugin it
forks reuses the loaded library and its resolved functions instead of building a new ``CDLL``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import signal

__all__ = [
    "PR_CAPBSET_DROP",
    "PR_CAP_AMBIENT",
    "PR_CAP_AMBIENT_CLEAR_ALL",
    "PR_GET_NO_NEW_PRIVS",
    "PR_GET_SECCOMP",
    "PR_SET_NO_NEW_PRIVS",
    "PR_SET_PDEATHSIG",
    "PR_SET_SECCOMP",
    "libc",
    "prctl",
    "set_parent_death_signal",
]

# prctl options (uapi/linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library of this process, with ``errno`` kept for :func:`ctypes.get_errno`.

    Raises OSError where there is no C library to load. ``syscall`` returns a C long (a raw
    system call's result is one), and ``prctl``/``syscall`` are resolved here, so that a process
    that forks after this call (a zygote, a ``preexec_fn``) never looks a symbol up in its child.
    """
    lib = ctypes.CDLL(None, use_errno=True)
    with contextlib.suppress(AttributeError):  # not Linux: callers report what is missing
        lib.syscall.restype = ctypes.c_long
        lib.prctl.restype = ctypes.c_int
    return lib


def prctl(option: int, *args: object) -> int:
    """``prctl(option, args...)``: ints are passed as unsigned longs, anything else (a pointer
    from ``ctypes.byref``) as is; missing arguments are 0. Returns the call's result (-1 with
    ``ctypes.get_errno()`` set on failure); raises AttributeError where libc has no prctl."""
    values = [ctypes.c_ulong(a) if isinstance(a, int) else a for a in args]
    values += [ctypes.c_ulong(0)] * (4 - len(values))
    return int(libc().prctl(ctypes.c_int(option), *values))


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``signum`` to this process when the thread that forked it exits.

    Returns False where that is not possible (not Linux): the parent's own stop path is then all
    there is. Safe in a ``preexec_fn`` once :func:`libc` has been called before the fork.
    """
    try:
        return prctl(PR_SET_PDEATHSIG, signum) == 0
    except (OSError, AttributeError):
        return False
