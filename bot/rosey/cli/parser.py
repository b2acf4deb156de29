"""The ``rosey`` command line: every command and option, with the help text that explains it."""

from __future__ import annotations

import argparse

from bot.rosey import __version__
from bot.rosey.cli import commands

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help="rosey.toml to use (default: ./rosey.toml if present, else defaults)",
    )
    parser = argparse.ArgumentParser(
        prog="rosey",
        description="Rosey: a chat bot whose plugins each run in their own sandboxed process "
        "and talk only over NATS.",
        epilog="Run `rosey COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"rosey {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[common],
        help="run the bot: NATS, plugins, router, console chat",
        description="Start NATS (embedded unless a URL is given), discover and start the plugins, route chat "
        "commands to them, and chat on the console when stdin is a terminal. "
        "Ctrl-C or SIGTERM stops everything.",
    )
    run.add_argument(
        "--nats-url", metavar="URL", help="use this NATS server instead of starting an embedded one"
    )
    run.add_argument("--no-chat", action="store_true", help="do not read chat lines from the console")
    run.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="override [rosey] log_level"
    )
    run.set_defaults(func=commands.cmd_run)

    send = sub.add_parser(
        "send",
        parents=[common],
        help="send a command to a plugin of the running bot and print its answer",
        description="Send NAME ARGS... as if a chat user typed !NAME ARGS... "
        "Exit 0 on a result, 1 on a plugin error, 2 on timeout, unknown plugin "
        "or when Rosey is not running.",
    )
    send.add_argument("name", help="plugin name, e.g. echo")
    send.add_argument(
        "args", nargs="*", help="arguments passed to the plugin (after `--`, even ones starting with '-')"
    )
    send.add_argument(
        "--timeout", type=float, metavar="S", help="seconds to wait (default: the plugin's command_timeout)"
    )
    send.add_argument("--json", action="store_true", help="print the whole outcome as JSON")
    send.set_defaults(func=commands.cmd_send)

    status = sub.add_parser(
        "status",
        parents=[common],
        help="one row per plugin: state, pid, restarts, CPU, memory, uptime, last exit",
    )
    status.add_argument("--json", action="store_true", help="everything the supervisor knows, as JSON")
    status.set_defaults(func=commands.cmd_status)

    plugins = sub.add_parser("plugins", help="plugins Rosey would run (works without a running bot)")
    plugins_sub = plugins.add_subparsers(dest="plugins_command", required=True, metavar="ACTION")
    listing = plugins_sub.add_parser(
        "list", parents=[common], help="configured and discovered plugins (discovery never runs plugin code)"
    )
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=commands.cmd_plugins_list)

    logs = sub.add_parser("logs", parents=[common], help="a plugin's recent stdout/stderr lines")
    logs.add_argument("name")
    logs.add_argument(
        "--lines", "-n", type=int, default=50, metavar="N", help="how many recent lines (default 50)"
    )
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.set_defaults(func=commands.cmd_logs)

    for action, text in (
        ("start", "start a stopped or failed plugin"),
        ("stop", "stop a plugin (SIGTERM, then SIGKILL after 5 s); it stays stopped"),
        ("restart", "stop then start a plugin"),
    ):
        lifecycle = sub.add_parser(action, parents=[common], help=text)
        lifecycle.add_argument("name")
        lifecycle.set_defaults(func=commands.cmd_lifecycle(action))

    doctor = sub.add_parser(
        "doctor",
        parents=[common],
        help="which protections this machine supports (Landlock, seccomp, namespaces) and what is missing",
    )
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=commands.cmd_doctor)

    nats_config = sub.add_parser(
        "nats-config", parents=[common], help="print the authorization block to use with your own nats-server"
    )
    nats_config.set_defaults(func=commands.cmd_nats_config)
    return parser
