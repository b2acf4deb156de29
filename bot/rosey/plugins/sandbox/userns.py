"""A user namespace of the plugin's own, for the namespace layers when Rosey is not root.

``mount-ns`` and ``pid-ns`` need CAP_SYS_ADMIN. Root has it; an unprivileged ``rosey run`` can
get it, over its own namespaces only, by first creating a user namespace (where the kernel and
its configuration allow unprivileged ones: ``rosey doctor`` shows ``user_namespaces``). The
plugin's uid and gid are mapped to themselves, so files it creates belong to the same user as
before and the supervisor (same uid, parent namespace) still signals and inspects it; files of
other users show as owned by the overflow uid (65534). The capabilities it gains there apply
to its own namespaces only, and the capability layer drops them right after.
"""

from __future__ import annotations

import ctypes
import errno
import os

from bot.rosey import linux

__all__ = ["enter", "entered"]

_CLONE_NEWUSER = 0x10000000
_CAP_SETFCAP = 31
# Entered at most once per process: a second user namespace would map the first one's ids.
_state = {"entered": False}


def entered() -> bool:
    """Whether this process already moved into a user namespace of its own (through :func:`enter`)."""
    return _state["entered"]


def enter() -> None:
    """Move into a new user namespace with this process's uid and gid mapped to themselves.

    Must run while single-threaded, with ``/proc`` still in view. Raises OSError (EPERM when
    unprivileged user namespaces are disabled, ENOSPC when the per-user count is used up).
    """
    if _state["entered"]:
        return
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0 and not _has_capability(_CAP_SETFCAP):
        # Since Linux 5.12 mapping uid 0 needs CAP_SETFCAP; failing after unshare would leave the
        # process in a namespace where it is nobody. (Root with CAP_SYS_ADMIN never gets here.)
        raise OSError(errno.EPERM, "a user namespace mapping uid 0 needs CAP_SETFCAP")
    if linux.libc().unshare(ctypes.c_int(_CLONE_NEWUSER)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWUSER): {os.strerror(err)}")
    _state["entered"] = True
    # Without CAP_SETGID in the parent namespace, gid_map may only be written once setgroups()
    # is disabled; the plugin never needs it (and has no capability to call it anyway).
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def _has_capability(number: int) -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> number & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False
