"""The parsers of ``rosey host`` and ``rosey hosts credentials`` (the commands are in ``cli/host``,
imported only when run: the parser stays light for every other command)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_host_commands"]


def _cmd_host(args: argparse.Namespace) -> int:
    from bot.rosey.cli.host import cmd_host

    return cmd_host(args)


def _cmd_hosts_credentials(args: argparse.Namespace) -> int:
    from bot.rosey.cli.host import cmd_hosts_credentials

    return cmd_hosts_credentials(args)


def add_host_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """``rosey host`` and ``rosey hosts credentials NAME``."""
    host = sub.add_parser(
        "host",
        parents=[common],
        help="run plugins on this machine for a hub elsewhere (a NATS leaf node of the hub)",
        description="Start a local nats-server as a leaf node of the hub named in [host] hub, with the "
        "credentials in [host] credentials (a 0600 file the hub wrote: `rosey hosts credentials NAME` "
        "on the hub), and supervise this file's [plugins.*] as `rosey run` does. The hub sees them in "
        "`rosey status` and can restart them and read their logs; it can never be reached beyond "
        "their subjects from here. Ctrl-C or SIGTERM stops.",
    )
    host.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="override [rosey] log_level"
    )
    host.set_defaults(func=_cmd_host)
    hosts = sub.add_parser(
        "hosts",
        help="the hub's plugin hosts: their credentials",
        description="The hosts this hub declares in [hosts.NAME] (plugins on other machines).",
    )
    hosts_sub = hosts.add_subparsers(dest="hosts_command", required=True, metavar="ACTION")
    creds = hosts_sub.add_parser(
        "credentials",
        parents=[common],
        help="write host NAME's leaf credentials to a 0600 file and print its path (never the password)",
        description="Write host NAME's credentials for the hub's leaf port (once; later calls name the "
        "same file) under the state directory, mode 0600, and print the file's path. Copy the file "
        "to the host and name it in its [host] credentials.",
    )
    creds.add_argument("name", help="the host, as in [hosts.NAME]")
    creds.set_defaults(func=_cmd_hosts_credentials)
