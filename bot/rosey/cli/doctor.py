"""``rosey doctor``: what this machine can enforce, and what is missing, in plain words."""

from __future__ import annotations

import platform
import sys
from typing import Any

from bot.rosey import __version__
from bot.rosey.config import RoseyConfig
from bot.rosey.errors import NatsServerNotFound

__all__ = ["doctor_report", "format_report", "missing_protections"]


def doctor_report(config: RoseyConfig | None = None) -> dict[str, Any]:
    from bot.rosey.broker.nats_server import find_nats_server
    from bot.rosey.broker.traffic import why_no_flood_detection
    from bot.rosey.plugins.sandbox.probe import probe

    report: dict[str, Any] = {
        "rosey": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
    }
    try:
        report["nats_server"] = str(find_nats_server())
    except NatsServerNotFound as exc:
        report["nats_server"] = None
        report["nats_server_error"] = str(exc)
    report["sandbox"] = probe()
    report["missing_protections"] = missing_protections(report["sandbox"])
    if config is not None:  # NATS has no per-user rate limit: Rosey's comes from the server's counters
        why = why_no_flood_detection(
            embedded=config.nats_url is None, monitor=config.nats_monitor, monitor_url=config.nats_monitor_url
        )
        report["flood_detection"] = why or "on (per-plugin publish rates from the NATS server's /connz)"
    report["ok"] = report["nats_server"] is not None
    return report


def missing_protections(sandbox: dict[str, Any]) -> list[str]:
    """Protections a plugin could not get here: each one makes sandbox = "strict" refuse plugins."""
    missing = []
    abi = sandbox.get("landlock_abi") or 0
    if abi < 1:
        missing.append("Landlock (filesystem rules)")
    if abi < 4:
        missing.append("Landlock ABI >= 4 (TCP connect/bind rules)")
    if abi < 6:
        missing.append("Landlock ABI >= 6 (signal and abstract-socket scoping)")
    if not sandbox.get("seccomp_filter"):
        missing.append(
            "seccomp filters (UDP/raw sockets, fork, ptrace, the parent-death signal's lock, "
            "siblings' scheduling, inotify, memfd)"
        )
    if sandbox.get("private_filesystem", True) is not True:
        missing.append("a private file-system view per plugin (mount namespace: root or user namespaces)")
    if sandbox.get("child_pid_namespace", True) is not True:
        missing.append("a PID namespace for plugins' children (root or user namespaces)")
    return missing


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"rosey {report['rosey']} on Python {report['python']}, {report['platform']}",
        f"nats-server: {report['nats_server'] or 'MISSING - ' + report.get('nats_server_error', '')}",
        "sandbox protections on this machine:",
    ]
    for name, value in report["sandbox"].items():
        lines.append(f"  {name:<26} {_words(value)}")
    missing = report["missing_protections"]
    if missing:
        lines.append("missing here: " + "; ".join(missing))
        lines.append('=> sandbox = "best-effort" runs plugins without these (one warning each);')
        lines.append('   sandbox = "strict" refuses to start them.')
    else:
        lines.append('=> every protection is available: sandbox = "strict" will start plugins here.')
    if "flood_detection" in report:
        lines.append(f"flood detection: {report['flood_detection']}")
    return "\n".join(lines)


def _words(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_words(v)}" for k, v in value.items())
    return str(value)
