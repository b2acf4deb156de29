"""The ``rosey`` command line: every command and option, with the help text that explains it."""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

from bot.rosey import __version__
from bot.rosey.cli import commands
from bot.rosey.cli import plugin_envs as plugin_envs_cli
from bot.rosey.cli import storage as storage_cli
from bot.rosey.cli.author import add_author_commands
from bot.rosey.cli.host_parser import add_host_commands  # s-host
from bot.rosey.cli.log_format import LOG_FORMATS
from bot.rosey.cli.reload import add_reload_parser  # issue 16
from bot.rosey.cli.review import add_review_parser

__all__ = ["RoseyArgumentParser", "build_parser", "positive_seconds"]


class RoseyArgumentParser(argparse.ArgumentParser):
    """argparse, but an input error is one line (what is wrong, where to read more) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def positive_seconds(text: str) -> float:
    """A ``--timeout`` value: a finite number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = RoseyArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help="rosey.toml to use (default: ./rosey.toml if present, else defaults)",
    )
    parser = RoseyArgumentParser(
        prog="rosey",
        description="Rosey: a chat bot whose plugins each run in their own sandboxed process "
        "and talk only over NATS.",
        epilog="Run `rosey COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"rosey {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=RoseyArgumentParser
    )

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
    run.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (default, for people) or json: one object per line (time, level, component, plugin, "
        "message, correlation_id) for log aggregators",
    )
    run.add_argument(  # issue 16
        "--watch",
        action="store_true",
        help="reload a plugin when its file is saved (checked first; the running version serves until "
        "the new one is ready, and keeps serving if it fails to start)",
    )
    run.set_defaults(func=commands.cmd_run)

    send = sub.add_parser(
        "send",
        parents=[common],
        help="send a command to a plugin of the running bot and print its answer",
        description="Send NAME ARGS... as if a chat user typed !NAME ARGS... Options may stand "
        "anywhere (rosey send echo --timeout 5 hi); after `--` everything is an argument. "
        "Exit 0 on a result, 1 on a plugin error, 2 on timeout, unknown plugin, bad input "
        "or when Rosey is not running.",
    )
    send.add_argument("name", help="plugin name, e.g. echo")
    send.add_argument(
        "args", nargs="*", help="arguments passed to the plugin (after `--`, even ones starting with '-')"
    )
    send.set_defaults(intermixed=send)  # main() re-reads its arguments with parse_intermixed_args
    send.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="S",
        help="seconds to wait (default: the plugin's command_timeout)",
    )
    send.add_argument("--json", action="store_true", help="print the whole outcome as JSON")
    send.set_defaults(func=commands.cmd_send)

    status = sub.add_parser(
        "status",
        parents=[common],
        help="one row per plugin: state, pid, restarts, CPU, memory, uptime, last exit",
        description="Ask the running bot for its status: one row per plugin, the reasons of failed "
        "plugins, NATS denials, and where NATS runs.",
    )
    status.add_argument("--json", action="store_true", help="everything the supervisor knows, as JSON")
    status.set_defaults(func=commands.cmd_status)

    top = sub.add_parser(
        "top",
        parents=[common],
        help="the status table, live: CPU, memory, restarts, commands, latency; q quits",
        description="Show the running bot's plugins and adapters in a table redrawn in place: state, pid, "
        "restarts, CPU, memory, uptime, commands, errors, median latency, NATS denials, last exit. "
        "Keys: q quit (or Ctrl-C); c, m, n, r sort by CPU, memory, name, restarts.",
    )
    top.add_argument(
        "--interval",
        "-d",
        type=positive_seconds,
        default=1.0,
        metavar="S",
        help="seconds between refreshes (default 1)",
    )
    top.add_argument(
        "--sort",
        choices=["cpu", "memory", "name", "restarts"],
        default="cpu",
        help="the order of the rows (default cpu: the busiest first)",
    )
    top.add_argument("--once", action="store_true", help="print one frame and exit (for scripts)")
    top.set_defaults(func=commands.cmd_top)

    dashboard = sub.add_parser(
        "dashboard",
        parents=[common],
        help="print the URL of the running bot's live web dashboard (with its operator token)",
        description="Print the URL of the dashboard the running bot serves on 127.0.0.1: a live table "
        "of plugins and adapters, 15-minute CPU/memory/latency plots, logs, and start/stop/restart "
        "buttons. The URL carries this run's operator token after '#' (never sent to the server); "
        "the buttons and logs need it, the table and plots do not. Treat the URL like a password.",
    )
    dashboard.add_argument(
        "--no-token", action="store_true", help="print the plain URL: read-only (table and plots)"
    )
    dashboard.set_defaults(func=commands.cmd_dashboard)

    plugins = sub.add_parser(
        "plugins",
        help="plugins Rosey would run (works without a running bot)",
        description="Inspect the plugins Rosey would run; nothing here needs a running bot.",
    )
    plugins_sub = plugins.add_subparsers(dest="plugins_command", required=True, metavar="ACTION")
    listing = plugins_sub.add_parser(
        "list",
        parents=[common],
        help="configured and discovered plugins (discovery never runs plugin code)",
        description="List the plugins from rosey.toml, the plugin directories and installed entry "
        "points, with where each comes from and the problems found. Plugin files are read, never run.",
    )
    listing.add_argument("--json", action="store_true", help="the same, as JSON")
    listing.set_defaults(func=commands.cmd_plugins_list)
    add_review_parser(plugins_sub, common)  # rosey plugins review NAME (requested vs granted)
    plugin_envs_cli.add_install_parser(plugins_sub, common)  # rosey plugins install NAME

    logs = sub.add_parser(
        "logs",
        parents=[common],
        help="a plugin's recent stdout/stderr lines",
        description="Print the last lines a plugin wrote to stdout and stderr (kept across its "
        "restarts), and with --follow the new ones as they come.",
    )
    logs.add_argument("name", nargs="?", help="plugin name, e.g. echo (optional with --gateway)")
    logs.add_argument(
        "--lines", "-n", type=int, default=50, metavar="N", help="how many recent lines (default 50)"
    )
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.add_argument(
        "--gateway", action="store_true", help="the HTTP gateway's audit log instead (of NAME only, if given)"
    )
    logs.set_defaults(func=commands.cmd_logs)

    for action, text in (
        ("start", "start a stopped or failed plugin"),
        ("stop", "stop a plugin (SIGTERM, then SIGKILL after 5 s); it stays stopped"),
        ("restart", "stop then start a plugin"),
    ):
        lifecycle = sub.add_parser(
            action, parents=[common], help=text, description=text[0].upper() + text[1:] + "."
        )
        lifecycle.add_argument("name", help="plugin name, e.g. echo")
        lifecycle.set_defaults(func=commands.cmd_lifecycle(action))

    doctor = sub.add_parser(
        "doctor",
        parents=[common],
        help="which protections this machine supports (Landlock, seccomp, namespaces) and what is missing",
        description="Check this machine: the nats-server binary, and each kernel protection the "
        'sandbox uses; say what is missing and whether sandbox = "strict" can start plugins here.',
    )
    doctor.add_argument("--json", action="store_true", help="the same, as JSON")
    doctor.set_defaults(func=commands.cmd_doctor)

    nats_config = sub.add_parser(
        "nats-config",
        parents=[common],
        help="print the authorization block to use with your own nats-server",
        description="Print the users and permissions `rosey run` would generate, as an authorization "
        "block for an operator's own nats-server; passwords stay environment variable references.",
    )

    storage = sub.add_parser(
        "storage",
        parents=[common],
        help="a plugin's stored data: list, get KEY, delete KEY, export, import FILE",
        description="Read and change what a plugin keeps in its storage, through the running bot "
        "(quotas apply to an import as to the plugin). export prints one JSON object of key -> "
        "value; import FILE ('-' for stdin) writes such an object back.",
    )
    storage.add_argument("name", help="plugin name, e.g. trivia")
    storage.add_argument(
        "action", nargs="?", default="list", choices=storage_cli.ACTIONS, help="default: list"
    )
    storage.add_argument("arg", nargs="?", metavar="KEY|FILE", help="the key (get, delete) or file (import)")
    storage.add_argument("--json", action="store_true", help="list: keys and usage as JSON")
    storage.set_defaults(func=storage_cli.cmd_storage)

    shutdown = sub.add_parser(
        "shutdown",
        parents=[common],
        help="stop the running bot cleanly (as Ctrl-C would)",
        description="Ask the running bot to stop: plugins get SIGTERM (their on_stop runs), then "
        "NATS stops. Waits until the bot has exited.",
    )
    shutdown.add_argument(
        "--timeout", type=positive_seconds, default=60.0, metavar="S", help="seconds to wait (default 60)"
    )
    shutdown.set_defaults(func=commands.cmd_shutdown)
    nats_config.set_defaults(func=commands.cmd_nats_config)
    add_author_commands(sub, common)  # rosey new, rosey test, rosey dev (issue 15)
    add_host_commands(sub, common)  # s-host: rosey host, rosey hosts credentials NAME (issue 16)
    add_reload_parser(sub, common)  # rosey reload [NAME] (issue 16)
    return parser
