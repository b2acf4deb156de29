"""``rosey doctor``: what this machine can enforce, and what is missing, in plain words."""

from __future__ import annotations

import platform
import sys
from typing import Any

from bot.rosey import __version__
from bot.rosey.errors import NatsServerNotFound

__all__ = ["doctor_report", "format_report"]


def doctor_report() -> dict[str, Any]:
    from bot.rosey.core.nats_server import find_nats_server
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
    report["ok"] = report["nats_server"] is not None
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"rosey {report['rosey']} on Python {report['python']}, {report['platform']}",
        f"nats-server: {report['nats_server'] or 'MISSING - ' + report.get('nats_server_error', '')}",
        "sandbox protections on this machine:",
    ]
    for name, value in report["sandbox"].items():
        lines.append(f"  {name:<24} {_words(value)}")
    return "\n".join(lines)


def _words(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_words(v)}" for k, v in value.items())
    return str(value)
