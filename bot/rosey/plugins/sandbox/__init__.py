"""The sandbox a plugin process applies to itself before any plugin code runs.

The runner serializes a :class:`SandboxPolicy` into ``ROSEY_SANDBOX``; the launcher calls
:func:`apply_from_environment` right after tying its life to the parent. Layers, in order:

0. while still privileged: a private file-system view holding only the granted paths
   (``mount-ns``), and, for a plugin allowed to create processes, a PID namespace that the
   kernel empties when the plugin dies (``pid-ns``): from there on the plugin's code runs in a
   child born inside it, while the process the runner started relays signals and the exit;
1. rlimits: open files, file size, no core dumps, optional address space;
2. capabilities: a root plugin drops every capability (bounding, ambient, effective...);
3. no_new_privs: no privilege gain across execve; lets the next two work without privileges;
4. Landlock: file-system paths, TCP ports, signal and abstract-socket scoping;
5. seccomp: what Landlock cannot see (UDP/raw/unix sockets, TCP Fast Open, listen(), chmod and
   friends, other processes' rlimits), process creation, dangerous system calls. Last, so the
   calls the earlier steps make are never subject to it.

Each layer reports applied / unavailable / failed. Best effort (the default) writes ONE stderr
line per missing protection and runs the plugin; ``strict`` exits 78 instead
(``ExitCode.SANDBOX_REFUSED``, sysexits' EX_CONFIG).
Everything here must happen while the process is single-threaded: Landlock, capabilities and
no_new_privs are per-thread state inherited only by threads created afterwards.
"""

from __future__ import annotations

import os
import sys

from bot.rosey.plugins.contract import Env, ExitCode
from bot.rosey.plugins.sandbox.policy import SandboxPolicy
from bot.rosey.plugins.sandbox.report import (
    Action,
    ProtectionResult,
    ProtectionState,
    SandboxReport,
    decide,
)

__all__ = [
    "Action",
    "ProtectionResult",
    "ProtectionState",
    "SandboxPolicy",
    "SandboxReport",
    "apply",
    "apply_from_environment",
    "decide",
    "enforce",
]


#: Every layer, in the order it is applied (what a platform without them reports missing).
_LAYERS = ("mount-ns", "pid-ns", "rlimits", "capabilities", "no_new_privs", "landlock", "seccomp")


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def apply(policy: SandboxPolicy) -> SandboxReport:
    """Apply every layer of ``policy`` to the calling process; never exits, never raises OSError."""
    from bot.rosey.plugins.sandbox import capabilities, landlock, mountns, pidns, rlimits, seccomp

    if not sys.platform.startswith("linux"):
        # Every layer below is a Linux interface; elsewhere say so instead of crashing in ctypes.
        detail = f"not available on {sys.platform}"
        return SandboxReport.of(
            ProtectionResult(name=name, state=ProtectionState.UNAVAILABLE, detail=detail) for name in _LAYERS
        )
    results: list[ProtectionResult] = []
    threads = _thread_count()
    if threads != 1:
        detail = f"{threads} threads already running; per-thread protections would miss the others"
        results.append(ProtectionResult(name="single-thread", state=ProtectionState.FAILED, detail=detail))
    # Namespaces first: they need the privileges the capability step drops.
    results.append(mountns.restrict(policy))
    results.append(pidns.restrict(policy))
    results.append(rlimits.apply_limits(policy))
    if policy.drop_capabilities:
        results.append(capabilities.drop_all())
    else:
        results.append(ProtectionResult(name="capabilities", state=ProtectionState.NOT_REQUESTED))
    nnp = capabilities.set_no_new_privs()
    results.append(nnp)
    results.extend(landlock.restrict(policy))
    results.append(seccomp.install(policy))
    return SandboxReport.of(results)


def enforce(report: SandboxReport, *, strict: bool) -> None:
    """Warn about (best effort) or exit SANDBOX_REFUSED on (strict) every protection not in force."""
    fatal: list[ProtectionResult] = []
    for result in report.results:
        action = decide(strict, result.state)
        if action is Action.WARN:
            sys.stderr.write(f"rosey sandbox: {result.describe()}\n")
        elif action is Action.EXIT:
            fatal.append(result)
    if fatal:
        for result in fatal:
            sys.stderr.write(f"rosey sandbox: {result.describe()}\n")
        sys.stderr.write(
            "rosey sandbox: the policy is strict and the protections above are not in force; "
            'refusing to run the plugin (with [rosey] sandbox = "best-effort" in rosey.toml it runs with '
            "what is available; `rosey doctor` lists what this machine lacks)\n"
        )
        sys.stderr.flush()
        os._exit(ExitCode.SANDBOX_REFUSED)


def apply_from_environment() -> SandboxReport | None:
    """Read (and remove) ``ROSEY_SANDBOX``, apply it, enforce it. No-op when it is absent.

    A policy that does not parse is fatal: the runner asked for a sandbox, so running the plugin
    without one would be a silent failure.
    """
    raw = os.environ.pop(Env.SANDBOX, None)
    if raw is None:
        return None
    try:
        policy = SandboxPolicy.from_json(raw)
    except (ValueError, TypeError) as exc:
        sys.stderr.write(f"rosey sandbox: invalid {Env.SANDBOX} policy ({exc}); refusing to run the plugin\n")
        sys.stderr.flush()
        os._exit(ExitCode.SANDBOX_REFUSED)
    report = apply(policy)
    enforce(report, strict=policy.strict)
    return report
