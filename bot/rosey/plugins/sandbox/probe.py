"""What this machine can enforce, for ``rosey doctor`` and ``rosey status``.

Everything here is a query: the Landlock ABI version, seccomp's GET_ACTION_AVAIL, prctl getters,
sysctl and cgroup files. Nothing is applied to the calling process, so the host may call it.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import Any

from bot.rosey import linux
from bot.rosey.plugins.sandbox import landlock, seccomp
from bot.rosey.plugins.sandbox.policy import SandboxPolicy

__all__ = ["cgroup_status", "probe"]

_WANTED_CONTROLLERS = ("memory", "pids", "cpu")


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _status_field(name: str) -> str | None:
    for line in (_read("/proc/self/status") or "").splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def _sysctl_int(path: str) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def cgroup_status() -> dict[str, Any]:
    """Which cgroup hierarchy we are in, and whether Rosey could create per-plugin cgroups in it."""
    mounts = [line.split() for line in (_read("/proc/self/mountinfo") or "").splitlines()]
    v2 = next((m[4] for m in mounts if " - cgroup2 " in " ".join(m)), None)
    v1 = any(" - cgroup " in " ".join(m) for m in mounts)
    version = "hybrid (v1 + v2)" if v1 and v2 else "v2" if v2 else "v1" if v1 else "none"
    own = next(
        (line[3:] for line in (_read("/proc/self/cgroup") or "").splitlines() if line.startswith("0::")), None
    )
    if v2 is None or own is None:
        return {"version": version, "delegated": False, "detail": "no cgroup v2 hierarchy for this process"}
    directory = Path(v2) / own.lstrip("/")
    available = (_read(directory / "cgroup.controllers") or "").split()
    missing = [c for c in _WANTED_CONTROLLERS if c not in available]
    writable = os.access(directory, os.W_OK) and os.access(directory / "cgroup.subtree_control", os.W_OK)
    delegated = not missing and writable
    if delegated:
        detail = f"{directory} is writable with controllers {', '.join(available)}"
    elif missing:
        detail = f"not delegated: {directory} lacks the {', '.join(missing)} controller(s)"
    else:
        detail = f"not delegated: {directory} is not writable"
    return {"version": version, "delegated": delegated, "detail": detail}


def probe() -> dict[str, Any]:
    """A flat report of kernel sandbox support; values are bools, ints, strings or small dicts."""
    if not sys.platform.startswith("linux"):
        return {"landlock_abi": 0, "seccomp_filter": False, "platform": f"{sys.platform}: no Linux sandbox"}
    abi, reason = landlock.abi_version()
    report: dict[str, Any] = {"landlock_abi": abi}
    if abi:
        report["landlock_features"] = landlock.features_for_abi(abi)
    else:
        report["landlock_features"] = f"none ({reason})"

    arch = seccomp.host_arch()
    filter_ok, filter_reason = seccomp.mode_filter_available(arch)
    report["seccomp_filter"] = filter_ok if filter_ok else f"no ({filter_reason})"
    report["seccomp_arch"] = arch.name if arch else f"unsupported ({os.uname().machine})"
    report["seccomp_mode_now"] = {0: "disabled", 1: "strict", 2: "filter"}.get(
        linux.prctl(linux.PR_GET_SECCOMP), "unknown"
    )
    nnp = linux.prctl(linux.PR_GET_NO_NEW_PRIVS)
    report["no_new_privs"] = "supported" if nnp >= 0 else "unsupported (kernel < 3.5)"

    max_userns = _sysctl_int("/proc/sys/user/max_user_namespaces")
    restricted = _sysctl_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    userns = bool(max_userns) and os.path.exists("/proc/self/ns/user")
    report["user_namespaces"] = userns if not restricted else "restricted by AppArmor for unprivileged users"
    report["network_namespaces"] = bool(_sysctl_int("/proc/sys/user/max_net_namespaces")) and os.path.exists(
        "/proc/self/ns/net"
    )
    report["cgroup"] = cgroup_status()

    root = os.geteuid() == 0
    report["running_as_root"] = root
    if root:
        guard = "seccomp (blocks fork/clone)" if filter_ok else "NONE: RLIMIT_NPROC is ignored for root"
        report["fork_bomb_guard"] = guard
        report["root_capabilities"] = "dropped in each plugin (capset + bounding set)"
    else:
        report["fork_bomb_guard"] = "seccomp (blocks fork/clone)" if filter_ok else "RLIMIT_NPROC only"
    report["udp_raw_unix_socket_guard"] = (
        "seccomp (unix: stream/seqpacket socketpairs only; a datagram pair could reach any pathname socket)"
        if filter_ok
        else "NONE: Landlock does not cover them"
    )
    # Both namespace layers need CAP_SYS_ADMIN in the plugin process before it drops its
    # capabilities (see sandbox.mountns and sandbox.pidns): a root rosey run has it; another
    # gets it from a user namespace of its own (mapping uid 0 there would need CAP_SETFCAP).
    own_userns = report["user_namespaces"] is True and (os.geteuid() != 0 or _has_capability(_CAP_SETFCAP))
    if _has_capability(_CAP_SYS_ADMIN) or own_userns:
        report["private_filesystem"] = True
        report["child_pid_namespace"] = True
    else:
        report["private_filesystem"] = (
            "no (needs root or user namespaces): stat() shows plugins metadata outside the sandbox"
        )
        report["child_pid_namespace"] = (
            "no (needs root or user namespaces): children of plugins with max_processes > 0 can "
            "outlive them; the next rosey run ends those it can prove are its own"
        )
    # No kernel quota per directory without project quotas set up on the file system: the watchdog
    # measures instead, so a plugin can overshoot by what it writes between two checks.
    disk = "watchdog: data dir's real blocks vs max_disk_mb, checked every 0.1 s; RLIMIT_FSIZE per file"
    report["disk_quota"] = disk + ("; fallocate refused (seccomp)" if filter_ok else "")
    report.update(_kernel_object_guards(filter_ok, abi))
    return report


def _kernel_object_guards(filter_ok: bool, landlock_abi: int) -> dict[str, str]:
    """What keeps a plugin from outliving the supervisor or reaching shared kernel objects."""
    defaults = SandboxPolicy()
    pending = defaults.max_pending_signals
    ceiling = f"{defaults.max_address_space_mb // 1024} GiB" if defaults.max_address_space_mb else "none"
    host_pending = resource.getrlimit(resource.RLIMIT_SIGPENDING)[0]
    pending_line = f"RLIMIT_SIGPENDING={pending} per plugin (root's count is shared; this process's limit is "
    pending_line += "unlimited)" if host_pending == resource.RLIM_INFINITY else f"{host_pending})"
    mountinfo = (
        "/proc/*/mountinfo outside Landlock's read rules"
        if landlock_abi
        else "/proc/*/mountinfo readable (no Landlock)"
    )
    if not filter_ok:
        inotify = _sysctl_int("/proc/sys/fs/inotify/max_user_instances") or "the"
        return {
            "parent_death_guard": "set at launch but NOT locked (no seccomp): a plugin can clear it and "
            "outlive a killed supervisor",
            "scheduling_guard": "NONE (no seccomp): a plugin can renice, pin, idle and deprioritise "
            "its siblings",
            "inotify_fanotify_guard": f"NONE (no seccomp): a plugin can take all {inotify} inotify "
            "instances of its uid, which the host shares, and watch files outside its sandbox",
            "hidden_memory_guard": "NONE (no seccomp): memory in a memfd, a grown pipe or a socket "
            f"buffer escapes the RSS watchdog; page tables bounded by RLIMIT_AS={ceiling}",
            "mount_table_guard": f"listmount/statmount NOT denied (no seccomp); {mountinfo}",
            "pending_signals_guard": pending_line,
        }
    return {
        "parent_death_guard": "SIGKILL set at launch, locked by seccomp (prctl cannot clear or change it)",
        "scheduling_guard": "seccomp: nice, affinity, scheduler, I/O priority reach only the caller itself",
        "inotify_fanotify_guard": "denied to plugins (seccomp)",
        "hidden_memory_guard": "memfd_create, memfd_secret, vmsplice, F_SETPIPE_SZ and socket buffer "
        f"sizes denied (seccomp); page tables bounded by RLIMIT_AS={ceiling}; a state dir on tmpfs "
        "still holds plugin data in memory",
        "mount_table_guard": f"listmount/statmount denied (seccomp); {mountinfo}",
        "pending_signals_guard": pending_line,
    }


_CAP_SYS_ADMIN = 21
_CAP_SETFCAP = 31


def _has_capability(number: int) -> bool:
    effective = _status_field("CapEff")
    try:
        return bool(int(effective or "0", 16) >> number & 1)
    except ValueError:
        return False
