"""What this machine can enforce, for ``rosey doctor`` and ``rosey status``.

Everything here is a query: the Landlock ABI version, seccomp's GET_ACTION_AVAIL, prctl getters,
sysctl and cgroup files. Nothing is applied to the calling process, so the host may call it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from bot.rosey import linux
from bot.rosey.plugins.sandbox import landlock, seccomp

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
    report["udp_raw_unix_socket_guard"] = "seccomp" if filter_ok else "NONE: Landlock does not cover them"
    # No kernel quota per directory without project quotas set up on the file system: the watchdog
    # measures instead, so a plugin can overshoot by what it writes between two checks.
    disk = "watchdog: data dir's real blocks vs max_disk_mb, checked every 0.1 s; RLIMIT_FSIZE per file"
    report["disk_quota"] = disk + ("; fallocate refused (seccomp)" if filter_ok else "")
    return report
