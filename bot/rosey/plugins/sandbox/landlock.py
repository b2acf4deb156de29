"""Landlock through ctypes: file-system rules by path, TCP rules by port, signal/socket scoping.

No binding on PyPI covers Landlock's network rules, and the whole API is three system calls
(landlock_create_ruleset 444, landlock_add_rule 445, landlock_restrict_self 446, the same numbers
on every architecture), so this module calls them directly. Every right the running kernel's ABI
knows is *handled* (denied unless a rule grants it); rights newer than the kernel are masked out,
which is Landlock's documented best-effort pattern:

=====  ============================================================
ABI    adds
=====  ============================================================
1      file-system access (read, write, make/remove, execute)
2      REFER (rename/link across directories)
3      TRUNCATE
4      TCP bind/connect by port
5      IOCTL_DEV
6      scoping: signals and abstract unix sockets stay inside the domain
=====  ============================================================

Landlock applies to the calling *thread* (and its future children), so it must run while the
process is still single-threaded, which the launcher guarantees. It does not cover UDP, raw or
pathname unix sockets: seccomp handles those.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterable

from bot.rosey import linux
from bot.rosey.plugins.sandbox.policy import SandboxPolicy
from bot.rosey.plugins.sandbox.report import ProtectionResult, ProtectionState

__all__ = ["FEATURES", "abi_version", "features_for_abi", "restrict"]

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

# File-system rights (uapi/linux/landlock.h).
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5

# Network rights (ABI 4) and scopes (ABI 6).
BIND_TCP = 1 << 0
CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

_FS_ABI1 = (1 << 13) - 1
#: Rights that make sense on a file (as opposed to a directory); others make add_rule fail.
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
_READ = READ_FILE | READ_DIR
# MAKE_CHAR/MAKE_BLOCK are never granted: a root plugin could otherwise mknod a disk device.
_WRITE = WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM
_WRITE |= REFER | TRUNCATE

#: Landlock feature -> the ABI version that introduced it (for status/doctor output).
FEATURES: dict[str, int] = {"fs": 1, "refer": 2, "truncate": 3, "tcp": 4, "ioctl_dev": 5, "scoping": 6}


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _NetPortAttr(ctypes.Structure):
    _fields_ = (("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64))


def _syscall(number: int, *args: object) -> int:
    """Raw syscall (ints are passed as C longs, None as NULL); raises OSError on failure."""
    c_args = [
        ctypes.c_long(a) if isinstance(a, int) else ctypes.c_void_p(None) if a is None else a for a in args
    ]
    result = int(linux.libc().syscall(ctypes.c_long(number), *c_args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def abi_version() -> tuple[int, str]:
    """(ABI version, reason when 0). Only a query: nothing is applied to the caller."""
    try:
        return _syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION), ""
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return 0, "kernel built without Landlock (ENOSYS)"
        if exc.errno == errno.EOPNOTSUPP:
            return 0, "Landlock disabled at boot (add 'landlock' to the lsm= kernel parameter)"
        return 0, f"Landlock query failed: {exc}"
    except AttributeError as exc:  # pragma: no cover - a libc without syscall()
        return 0, f"no syscall() in libc: {exc}"


def features_for_abi(abi: int) -> dict[str, bool]:
    """Which Landlock features an ABI version implies, for status/doctor output."""
    return {name: abi >= needed for name, needed in FEATURES.items()}


def _handled_fs(abi: int) -> int:
    handled = _FS_ABI1
    if abi >= 2:
        handled |= REFER
    if abi >= 3:
        handled |= TRUNCATE
    if abi >= 5:
        handled |= IOCTL_DEV
    return handled


def _add_path_rules(ruleset: int, paths: Iterable[str], rights: int) -> tuple[int, list[str]]:
    """Grant ``rights`` beneath each path; return (rules added, paths skipped as missing/unreachable)."""
    added, missing = 0, []
    for path in paths:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except (FileNotFoundError, PermissionError):  # nothing to grant: the path is out of reach anyway
            missing.append(path)
            continue
        try:
            allowed = rights if stat.S_ISDIR(os.fstat(fd).st_mode) else rights & _FILE_RIGHTS
            if allowed:
                attr = _PathBeneathAttr(allowed_access=allowed, parent_fd=fd)
                _syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(attr), 0)
                added += 1
        finally:
            os.close(fd)
    return added, missing


def restrict(policy: SandboxPolicy) -> list[ProtectionResult]:
    """Restrict the calling thread (and all it creates) to ``policy``.

    Returns one "landlock" result when Landlock is missing or could not be applied as a whole,
    else one result each for "landlock-fs", "landlock-net" and "landlock-scope" (the last two
    UNAVAILABLE on kernels whose ABI predates them).
    """
    abi, reason = abi_version()
    if abi == 0:
        return [ProtectionResult(name="landlock", state=ProtectionState.UNAVAILABLE, detail=reason)]

    handled_fs = _handled_fs(abi)
    handled_net = 0
    if abi >= 4:
        handled_net = CONNECT_TCP | (0 if policy.allow_bind else BIND_TCP)
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    size = ctypes.sizeof(ctypes.c_uint64) * (3 if abi >= 6 else 2 if abi >= 4 else 1)
    attr = _RulesetAttr(handled_access_fs=handled_fs, handled_access_net=handled_net, scoped=scoped)

    read = _READ | (EXECUTE if policy.allow_subprocess else 0)
    try:
        ruleset = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, 0)
    except OSError as exc:
        return [
            ProtectionResult(name="landlock", state=ProtectionState.FAILED, detail=f"create_ruleset: {exc}")
        ]
    try:
        n_read, miss_read = _add_path_rules(ruleset, policy.read_paths, read & handled_fs)
        n_write, miss_write = _add_path_rules(ruleset, policy.write_paths, (read | _WRITE) & handled_fs)
        # A foreign runtime's program (and its ELF interpreter): execute these files only.
        n_exec, miss_exec = _add_path_rules(ruleset, policy.exec_paths, (READ_FILE | EXECUTE) & handled_fs)
        for port in policy.connect_ports if handled_net else ():
            port_attr = _NetPortAttr(allowed_access=CONNECT_TCP, port=port)
            _syscall(_SYS_ADD_RULE, ruleset, _RULE_NET_PORT, ctypes.byref(port_attr), 0)
        _syscall(_SYS_RESTRICT_SELF, ruleset, 0)
    except OSError as exc:
        return [ProtectionResult(name="landlock", state=ProtectionState.FAILED, detail=str(exc))]
    finally:
        os.close(ruleset)

    fs_detail = f"ABI {abi}: {n_read} read rules, {n_write} read-write rules"
    if n_exec:
        fs_detail += f", {n_exec} execute rules"
    if miss_read or miss_write or miss_exec:
        fs_detail += f"; skipped (missing or unreachable) {', '.join(miss_read + miss_write + miss_exec)}"
    results = [ProtectionResult(name="landlock-fs", state=ProtectionState.APPLIED, detail=fs_detail)]
    if handled_net:
        ports = ", ".join(map(str, policy.connect_ports)) or "none"
        bind = "bind allowed" if policy.allow_bind else "bind denied"
        detail = f"TCP connect only to port(s) {ports} (any host); {bind}"
        results.append(ProtectionResult(name="landlock-net", state=ProtectionState.APPLIED, detail=detail))
    else:
        results.append(
            ProtectionResult(
                name="landlock-net", state=ProtectionState.UNAVAILABLE, detail=f"needs ABI 4, have {abi}"
            )
        )
    if scoped:
        detail = "signals and abstract unix sockets confined to the plugin"
        results.append(ProtectionResult(name="landlock-scope", state=ProtectionState.APPLIED, detail=detail))
    else:
        results.append(
            ProtectionResult(
                name="landlock-scope", state=ProtectionState.UNAVAILABLE, detail=f"needs ABI 6, have {abi}"
            )
        )
    return results
