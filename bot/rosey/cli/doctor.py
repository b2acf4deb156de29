"""``rosey doctor``: what this machine can enforce, and what is missing, in plain words."""

from __future__ import annotations

import platform
import sys
from typing import Any

from bot.rosey import __version__
from bot.rosey.cli.plugin_envs import environment_checks as _environment_checks
from bot.rosey.cli.plugin_envs import format_environments as _format_environments
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
        report["adapters"] = adapter_checks(config)
        report["plugin_environments"] = _environment_checks(config)
    adapters_ok = all(check == "ready" for check in report.get("adapters", {}).values())
    # A stale environment still starts its plugin (with a warning); a missing one cannot import.
    envs_ok = all(c["state"] in ("ready", "stale") for c in report.get("plugin_environments", {}).values())
    report["ok"] = report["nats_server"] is not None and adapters_ok and envs_ok
    return report


def adapter_checks(config: RoseyConfig) -> dict[str, str]:
    """Per configured adapter: "ready", or what would stop it (its library, a secret), in words.
    Secrets are read to check them, never shown."""
    import importlib.util

    from bot.rosey.errors import SecretUnavailable

    checks: dict[str, str] = {}
    for name, adapter in config.adapters.items():
        if not adapter.is_process or not adapter.enabled:
            continue
        kind = adapter.kind
        problems = []
        if kind.library and importlib.util.find_spec(kind.library) is None:
            problems.append(
                f"the {kind.library!r} library is missing (pip install 'rosey-bot[{kind.extra}]')"
            )
        for source in adapter.secrets.values():
            try:
                source.read()
            except SecretUnavailable as exc:
                problems.append(str(exc))
            else:
                if source.loosely_readable():
                    problems.append(f"{source.file} is readable by other users (chmod 600 it)")
        checks[name] = "; ".join(problems) or "ready"
    return checks


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
    for name, check in report.get("adapters", {}).items():
        lines.append(f"adapter {name}: {check}")
    lines.extend(_format_environments(report.get("plugin_environments", {})))
    return "\n".join(lines)


def _words(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_words(v)}" for k, v in value.items())
    return str(value)
