"""Drop every Linux capability, and set no_new_privs.

Rosey runs as root here, and a root plugin keeps all capabilities unless it drops them:
CAP_NET_ADMIN (reconfigure the host's network through netlink), CAP_SYS_ADMIN, CAP_MKNOD,
CAP_SYS_BOOT, CAP_DAC_OVERRIDE... Landlock and seccomp still apply to root, but every capability
left is attack surface they were not designed to cover. After this step the process is uid 0
with no privileges: it can still open files its uid owns (Landlock decides which), nothing more.

Order matters: the bounding set can only be reduced while CAP_SETPCAP is still held, so it goes
first; then ambient, then effective/permitted/inheritable via capset(2). no_new_privs makes the
drop permanent across execve (a root execve would otherwise regain the bounding set) and is
what lets an unprivileged process install Landlock and seccomp at all.
"""

from __future__ import annotations

import ctypes
import errno
import os

from bot.rosey import linux
from bot.rosey.plugins.sandbox.report import ProtectionResult, ProtectionState

__all__ = ["drop_all", "set_no_new_privs"]

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63  # PR_CAPBSET_DROP fails with EINVAL past the last one; we stop there


def drop_all() -> ProtectionResult:
    """Empty the bounding, ambient, effective, permitted and inheritable sets."""
    notes: list[str] = []
    for cap in range(_last_cap() + 1):
        if linux.prctl(linux.PR_CAPBSET_DROP, cap) != 0:
            err = ctypes.get_errno()
            if err == errno.EINVAL:
                break
            if err == errno.EPERM:  # no CAP_SETPCAP: an unprivileged process, nothing to drop
                notes.append("bounding set kept (no CAP_SETPCAP)")
                break
            return _failed(f"PR_CAPBSET_DROP({cap}): {os.strerror(err)}")
    if linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL) != 0:
        notes.append(f"ambient clear: {os.strerror(ctypes.get_errno())}")  # kernels < 4.3
    header = _CapHeader(version=_LINUX_CAPABILITY_VERSION_3, pid=0)
    data = (_CapData * 2)()
    if linux.libc().capset(ctypes.byref(header), data) != 0:
        return _failed(f"capset: {os.strerror(ctypes.get_errno())}")
    detail = "all capabilities dropped" + (f" ({'; '.join(notes)})" if notes else "")
    return ProtectionResult(name="capabilities", state=ProtectionState.APPLIED, detail=detail)


def set_no_new_privs() -> ProtectionResult:
    """No setuid/file-capability gains on execve, ever again; a prerequisite for the rest."""
    try:
        linux.libc()
    except OSError as exc:  # pragma: no cover - no libc
        return ProtectionResult(name="no_new_privs", state=ProtectionState.UNAVAILABLE, detail=str(exc))
    if linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1) != 0:
        err = ctypes.get_errno()
        state = ProtectionState.UNAVAILABLE if err == errno.EINVAL else ProtectionState.FAILED
        return ProtectionResult(name="no_new_privs", state=state, detail=os.strerror(err))
    return ProtectionResult(name="no_new_privs", state=ProtectionState.APPLIED)


def _failed(detail: str) -> ProtectionResult:
    return ProtectionResult(name="capabilities", state=ProtectionState.FAILED, detail=detail)
