"""``rosey reload [NAME]`` (issue 16): a plugin's new version without dropping a command, or the
configuration without a full restart. Its parser is added with one call from ``parser.py``."""

from __future__ import annotations

import argparse
from typing import Any

from bot.rosey.cli.client import control
from bot.rosey.config import load_config
from bot.rosey.supervision.status import PluginStatus

__all__ = ["add_reload_parser", "cmd_reload"]

EXIT_OK, EXIT_PLUGIN_ERROR = 0, 1


async def cmd_reload(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    data = {"name": args.name} if args.name else {}
    reply = await control(config, "reload", data, timeout=args.timeout)
    if args.name:
        for raw in reply.get("plugins", []):
            plugin = PluginStatus.from_dict(raw)
            print(f"{plugin.name}: reloaded, {plugin.state}" + (f" (pid {plugin.pid})" if plugin.pid else ""))
        return EXIT_OK
    report = reply.get("config", {})
    kinds = (
        ("started", "started"),
        ("stopped", "stopped (removed from rosey.toml)"),
        ("changed", "new settings, applied at its next start"),
        ("restarted", "restarted with its new number of replicas"),
    )
    for key, what in kinds:
        for name in report.get(key, []):
            if name not in report.get("failed", {}):
                print(f"{name}: {what}")
    for name, why in report.get("failed", {}).items():
        print(f"{name}: failed to start: {why}")
    if not any(report.get(key) for key, _ in kinds):
        print("rosey.toml: nothing changed")
    return EXIT_PLUGIN_ERROR if report.get("failed") else EXIT_OK


def add_reload_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    reload = sub.add_parser(
        "reload",
        parents=[common],
        help="a plugin's new version without dropping a command, or (no NAME) re-read rosey.toml",
        description="With NAME: start the plugin's new version beside the running one (each replica in "
        "turn), wait until it is ready, move its commands to it, then let the old one finish its "
        "commands in flight and stop. If the new version fails to start, the old one keeps serving "
        "and the error is printed in one line (exit status 2). Without NAME: re-read rosey.toml; "
        "start new plugins, stop removed ones, and apply changed settings at each plugin's next "
        "start; a file with an error changes nothing.",
    )
    reload.add_argument("name", nargs="?", help="plugin name, e.g. echo (default: the configuration)")
    reload.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="seconds to wait for the bot (default 120)"
    )
    reload.set_defaults(func=cmd_reload)
