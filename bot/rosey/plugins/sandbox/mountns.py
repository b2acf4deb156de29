"""A private, minimal file-system view: the plugin sees only the paths its policy grants.

Landlock decides what a plugin may *open*, but not what it may ``stat()``: without this layer a
plugin learns the size, inode and times of the operator's ``rosey.toml``, the core's
``runtime.json``, the NATS configuration (which holds every plugin's password) and the other
plugins' data, and can read the host's mount table. Here the plugin process, still privileged
and before any plugin code, moves into a mount namespace of its own and replaces its root with a
tmpfs holding bind mounts of exactly the policy's paths, each at its own absolute path, so
nothing else about the plugin changes:

1. open every path to expose (``O_PATH``) while the host's tree is still in view;
2. ``unshare(CLONE_NEWNS)`` and make every mount private (nothing propagates back to the host);
3. mount a small tmpfs on a staging directory, and in it: a directory skeleton, read-only
   binds of ``read_paths``, read-write binds of ``write_paths`` (the data dir, ``/dev/null``),
   and the symbolic links on the way to them (``/lib -> usr/lib``, a virtualenv's
   ``bin/python``, ``/etc/localtime``) so the names a plugin uses still resolve;
4. ``pivot_root`` into it, detach the old root, make the new root read-only, and return to the
   working directory.

Then ``stat()`` of anything not granted fails with ENOENT, ``/proc/self/mountinfo`` does not
exist, and what the plugin may read is also all it can see. There is no ``/proc``: a fresh one
needs a PID namespace the plugin is inside of, and the host's would show every process on the
machine; nothing a plugin runs needs it (psutil and the process counts are the host's). Landlock
and seccomp still apply on top (seccomp denies mount, umount, pivot_root, unshare and setns, so
the view cannot be undone; the capabilities that would allow it are dropped next).

It needs CAP_SYS_ADMIN: a root ``rosey run`` has it (the case that matters most: a root plugin
is the one that could read everything); an unprivileged one gets it over its own mounts from a
user namespace of its own (:mod:`~bot.rosey.plugins.sandbox.userns`), where the kernel allows
unprivileged user namespaces. Where neither works the layer reports itself unavailable and
best effort goes on without it; ``strict`` refuses to run the plugin.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from bot.rosey import linux
from bot.rosey.plugins.sandbox import userns
from bot.rosey.plugins.sandbox.policy import SYSTEM_READ_PATHS, SandboxPolicy
from bot.rosey.plugins.sandbox.report import ProtectionResult, ProtectionState

__all__ = ["NAME", "Bind", "Plan", "plan", "restrict"]

NAME = "mount-ns"

_CLONE_NEWNS = 0x00020000
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_MNT_DETACH = 0x2
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_NOSUID = 0x2
_MOUNT_ATTR_NODEV = 0x4
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_SYS_MOUNT_SETATTR = 442  # the same on x86_64 and aarch64
#: Where the new root is assembled. Any directory will do: it is covered only in the plugin's
#: own mount namespace, and every source is reached through a descriptor opened beforehand.
_STAGING_CANDIDATES = ("/tmp", "/mnt", "/")
#: The new root holds directories, empty files (mount points) and links, never data.
_TMPFS_OPTIONS = b"mode=0755,size=1m,nr_inodes=4096"
#: Enough links to resolve any sane chain; a loop is simply left unresolved.
_MAX_LINKS = 40


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


@dataclass(frozen=True)
class Bind:
    """One path of the host, mounted at the same path in the new root."""

    path: str
    writable: bool
    directory: bool
    device: bool  # device nodes keep working only on a mount without MS_NODEV


@dataclass(frozen=True)
class Plan:
    """What the new root will hold: binds (outermost first) and symbolic links (path, target)."""

    binds: tuple[Bind, ...]
    links: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        writable = sum(1 for b in self.binds if b.writable)
        return (
            f"private root with {len(self.binds) - writable} read-only and {writable} read-write "
            f"bind(s), {len(self.links)} link(s); nothing else of the host's file system is visible"
        )


def _aliases(policy: SandboxPolicy) -> list[str]:
    """Names a plugin uses that may be links to the granted real paths: keep them resolvable."""
    names = [*SYSTEM_READ_PATHS, sys.executable]
    with contextlib.suppress(OSError):
        names.extend(os.path.join("/", entry) for entry in os.listdir("/"))  # /bin, /lib, /lib64 ...
    return [n for n in names if n]


def _walk_links(path: str, links: dict[str, str], seen: dict[str, int | None]) -> None:
    """Record every symbolic link met while resolving ``path`` (as the kernel would).

    ``seen`` caches lstat() modes (None: missing) across the walks of one plan: the paths share
    most of their components.
    """
    pending = [p for p in path.split("/") if p]
    resolved = "/"
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            resolved = os.path.dirname(resolved.rstrip("/")) or "/"
            continue
        current = os.path.join(resolved, part)
        if current not in seen:
            try:
                seen[current] = os.lstat(current).st_mode
            except OSError:
                seen[current] = None
        mode = seen[current]
        if mode is None:
            return
        if not stat.S_ISLNK(mode):
            resolved = current
            continue
        hops += 1
        if hops > _MAX_LINKS:
            return
        target = os.readlink(current)
        links[current] = target
        pending[:0] = [p for p in target.split("/") if p]
        if target.startswith("/"):
            resolved = "/"


def _beneath(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def plan(policy: SandboxPolicy) -> Plan:
    """The new root for ``policy``: a pure reading of the host's tree, nothing is changed."""
    binds: dict[str, Bind] = {}
    read_only = (*policy.read_paths, *policy.exec_paths)  # a program to exec must be there to exec
    for writable, paths in ((False, read_only), (True, policy.write_paths)):
        for raw in paths:
            path = os.path.realpath(raw)
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue  # missing: nothing to show (Landlock skips it too)
            device = stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            previous = binds.get(path)
            binds[path] = Bind(
                path=path,
                writable=writable or (previous is not None and previous.writable),
                directory=stat.S_ISDIR(mode),
                device=device,
            )
    links: dict[str, str] = {}
    seen: dict[str, int | None] = {}
    for name in [*read_only, *policy.write_paths, *_aliases(policy)]:
        _walk_links(name, links, seen)
    granted = list(binds)
    # A link is kept when it lies outside every bind (inside one, it is there already) and is on
    # the way to something granted; the others would only tell where host files are.
    kept = {}
    for link, target in links.items():
        if _beneath(link, granted):
            continue
        if _beneath(os.path.realpath(link), granted):
            kept[link] = target
    ordered = sorted(binds.values(), key=lambda b: (b.path.count("/"), b.path))
    return Plan(binds=tuple(ordered), links=tuple(sorted(kept.items())))


# ---------------------------------------------------------------------- kernel side


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: bytes | None = None
) -> None:
    libc = linux.libc()
    encode = os.fsencode
    result = libc.mount(
        encode(source) if source is not None else None,
        encode(target),
        encode(fstype) if fstype is not None else None,
        ctypes.c_ulong(flags),
        data,
    )
    _check(result, f"mount {source or fstype} on {target}")


def _set_attributes(target: str, attributes: int, *, recursive: bool) -> None:
    """Make ``target``'s mount (and those beneath it) read-only/nosuid/nodev."""
    attr = _MountAttr(attr_set=attributes)
    flags = _AT_RECURSIVE if recursive else 0
    args = (-100, os.fsencode(target), flags, ctypes.byref(attr), ctypes.sizeof(attr))  # AT_FDCWD
    result = linux.libc().syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR), *(ctypes.c_long(a) if isinstance(a, int) else a for a in args)
    )
    if result == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.ENOSYS, errno.EPERM):
        raise OSError(err, f"mount_setattr {target}: {os.strerror(err)}")
    # Kernels before 5.12: the top mount only (submounts of a bind keep their own flags).
    remount = _MS_REMOUNT | _MS_BIND
    remount |= _MS_RDONLY if attributes & _MOUNT_ATTR_RDONLY else 0
    remount |= _MS_NOSUID if attributes & _MOUNT_ATTR_NOSUID else 0
    remount |= _MS_NODEV if attributes & _MOUNT_ATTR_NODEV else 0
    _mount(None, target, None, remount)


def _staging() -> str:
    for candidate in _STAGING_CANDIDATES:
        if os.path.isdir(candidate) and not os.path.islink(candidate):
            return candidate
    raise OSError(errno.ENOENT, "no directory to assemble the new root on")


def _make_mount_point(target: str, bind: Bind) -> None:
    if os.path.lexists(target):
        return  # inside an earlier bind: the real path is there already
    os.makedirs(target if bind.directory else os.path.dirname(target), mode=0o755, exist_ok=True)
    if not bind.directory:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))


def _unshare() -> str | None:
    """Enter a mount namespace of our own; None, or why this process cannot (OSError: it failed)."""
    libc = linux.libc()
    if libc.unshare(ctypes.c_int(_CLONE_NEWNS)) == 0:
        return None
    err = ctypes.get_errno()
    if err != errno.EPERM:
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    # Not root: a user namespace of its own gives the process CAP_SYS_ADMIN over its own mounts.
    try:
        userns.enter()
    except OSError as exc:
        return f"needs root or unprivileged user namespaces ({exc.strerror})"
    _check(libc.unshare(ctypes.c_int(_CLONE_NEWNS)), "unshare(CLONE_NEWNS) in a user namespace")
    return None


def _assemble(view: Plan, sources: dict[str, int], root: str) -> None:
    """Binds and links of ``view`` beneath ``root`` (a fresh tmpfs)."""
    for bind in view.binds:
        target = root.rstrip("/") + bind.path
        _make_mount_point(target, bind)
        _mount(f"/proc/self/fd/{sources[bind.path]}", target, None, _MS_BIND | _MS_REC)
        attributes = _MOUNT_ATTR_NOSUID | (0 if bind.device else _MOUNT_ATTR_NODEV)
        attributes |= 0 if bind.writable else _MOUNT_ATTR_RDONLY
        _set_attributes(target, attributes, recursive=True)
    # Links last: created earlier, an absolute one would lead mkdir out of the new root.
    for link, text in view.links:
        target = root.rstrip("/") + link
        if os.path.lexists(target):
            continue
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.symlink(text, target)


def _apply(view: Plan, sources: dict[str, int], cwd: str) -> Plan:
    """Assemble the new root and switch to it; the caller has entered its own mount namespace."""
    libc = linux.libc()
    arch = os.uname().machine
    # From here on only this process's copy of the mount table changes.
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    root = _staging()
    # Opened now, not before unshare: a bind's source must be a mount of the caller's namespace.
    # And before the tmpfs covers the staging directory, so every source is still in view.
    for bind in view.binds:
        # Missing, or out of this user's reach: nothing to show (Landlock skips them too).
        with contextlib.suppress(FileNotFoundError, PermissionError):
            sources[bind.path] = os.open(bind.path, os.O_PATH | os.O_CLOEXEC)
    view = Plan(binds=tuple(b for b in view.binds if b.path in sources), links=view.links)
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, _TMPFS_OPTIONS)
    try:
        _assemble(view, sources, root)
        os.chdir(root)
        # pivot_root(".", "."): the old root ends up stacked on the new one, and is then detached.
        _check(libc.syscall(ctypes.c_long(_SYS_PIVOT_ROOT[arch]), b".", b"."), "pivot_root")
    except OSError:
        # Leave the process with the tree it had (best effort runs it anyway): the half-built
        # root would hide whatever lies under the staging directory, the data dir perhaps.
        with contextlib.suppress(OSError):
            os.chdir(cwd)
        libc.umount2(os.fsencode(root), ctypes.c_int(_MNT_DETACH))
        raise
    _check(libc.umount2(b".", ctypes.c_int(_MNT_DETACH)), "detach the old root")
    os.chdir("/")
    _set_attributes("/", _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV, recursive=False)
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")  # the working directory is not in the view: "/" is, and is empty
    return view


def restrict(policy: SandboxPolicy) -> ProtectionResult:
    """Move the calling (single-threaded, still privileged) process into its private view."""
    if not policy.private_mounts:
        return ProtectionResult(name=NAME, state=ProtectionState.NOT_REQUESTED, detail="private_mounts off")
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    view = plan(policy)
    sources: dict[str, int] = {}
    arch = os.uname().machine
    try:
        if arch not in _SYS_PIVOT_ROOT:
            raise OSError(errno.ENOSYS, f"pivot_root: no syscall number for {arch}")
        why = _unshare()
        if why is not None:
            detail = f"{why}; stat() can see outside the sandbox"
            return ProtectionResult(name=NAME, state=ProtectionState.UNAVAILABLE, detail=detail)
        view = _apply(view, sources, cwd)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return ProtectionResult(name=NAME, state=ProtectionState.UNAVAILABLE, detail=str(exc))
        return ProtectionResult(name=NAME, state=ProtectionState.FAILED, detail=str(exc))
    finally:
        for fd in sources.values():
            os.close(fd)
    detail = view.describe() + ("; in a user namespace of its own" if userns.entered() else "")
    return ProtectionResult(name=NAME, state=ProtectionState.APPLIED, detail=detail)
