"""Resource limits the kernel enforces per process: open files, file size, queued signals, core dumps,
address space.

Soft and hard limits are set together so the plugin cannot raise them again (raising a hard
limit needs CAP_SYS_RESOURCE, which the capability step drops anyway). A limit already lower
than the policy's is kept. Exceeding RLIMIT_FSIZE raises OSError(EFBIG) rather than killing the
process, because CPython ignores SIGXFSZ.

RLIMIT_NPROC is deliberately absent: the kernel ignores it for uid 0, and Rosey runs as root
here; process creation is stopped by the seccomp filter instead. RLIMIT_AS caps *virtual* memory,
which a Python process with a thread pool reserves far beyond what it uses (see SandboxPolicy):
by default it is only a high ceiling (``max_address_space_mb``) that bounds the page tables a
plugin can make the kernel hold; ``max_memory_mb`` sets a real limit.
"""

from __future__ import annotations

import resource

from bot.rosey.plugins.sandbox.policy import SandboxPolicy
from bot.rosey.plugins.sandbox.report import ProtectionResult, ProtectionState

__all__ = ["apply_limits", "planned_limits"]

_MB = 1024 * 1024


def planned_limits(policy: SandboxPolicy) -> dict[str, int]:
    """RLIMIT name -> value the policy asks for."""
    limits = {
        "RLIMIT_NOFILE": policy.max_open_files,
        "RLIMIT_FSIZE": policy.max_file_size_mb * _MB,
        "RLIMIT_SIGPENDING": policy.max_pending_signals,
    }
    if not policy.core_dumps:
        limits["RLIMIT_CORE"] = 0
    address_space = [mb for mb in (policy.max_memory_mb, policy.max_address_space_mb) if mb is not None]
    if address_space:
        limits["RLIMIT_AS"] = min(address_space) * _MB
    if policy.max_data_mb is not None:
        limits["RLIMIT_DATA"] = policy.max_data_mb * _MB
    return limits


def _lower(name: str, wanted: int) -> int:
    which = getattr(resource, name)
    _soft, hard = resource.getrlimit(which)
    value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(which, (value, value))
    return value


def apply_limits(policy: SandboxPolicy) -> ProtectionResult:
    """Set every planned limit; one failure makes the whole step FAILED (the rest still apply)."""
    applied: list[str] = []
    failed: list[str] = []
    for name, wanted in planned_limits(policy).items():
        try:
            value = _lower(name, wanted)
        except (OSError, ValueError, AttributeError) as exc:
            failed.append(f"{name}: {exc}")
            continue
        shown = f"{value // _MB}MB" if name in ("RLIMIT_FSIZE", "RLIMIT_AS", "RLIMIT_DATA") else str(value)
        applied.append(f"{name.removeprefix('RLIMIT_')}={shown}")
    if failed:
        return ProtectionResult(name="rlimits", state=ProtectionState.FAILED, detail="; ".join(failed))
    return ProtectionResult(name="rlimits", state=ProtectionState.APPLIED, detail=", ".join(applied))
