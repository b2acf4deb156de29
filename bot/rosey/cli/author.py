"""The plugin author's commands: ``rosey new``, ``rosey test``, ``rosey dev`` (their parsers).

Wired into the ``rosey`` parser with one call; each command's module is imported only when it runs
(``rosey dev`` pulls in the whole bot).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_author_commands"]


def _new(args: argparse.Namespace) -> int:
    from bot.rosey.cli.scaffold import cmd_new

    return cmd_new(args)


def _test(args: argparse.Namespace) -> int:
    from bot.rosey.cli.plugin_tests import cmd_test

    return cmd_test(args)


def _dev(args: argparse.Namespace) -> int:
    from bot.rosey.cli.dev import cmd_dev

    return cmd_dev(args)


def add_author_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``new``, ``test`` and ``dev`` to the subparsers ``sub`` (``common``: --config)."""
    new = sub.add_parser(
        "new",
        parents=[common],
        help="create a plugin: code, a test and a README, ready for `rosey test` and `rosey dev`",
        description="Create plugins/NAME/ (plugin.py with a working plugin answering !NAME, "
        "test_NAME.py using Rosey's pytest harness, README.md), or with --single-file "
        "plugins/NAME.py and tests/test_NAME.py. plugins/ is where `rosey run` looks by default. "
        "Existing files are never overwritten.",
    )
    new.add_argument(
        "name", help="the plugin's name and chat command: lowercase letters, digits, underscores"
    )
    new.add_argument(
        "--single-file", action="store_true", help="one file, plugins/NAME.py, and tests/test_NAME.py"
    )
    new.add_argument(
        "--dir",
        metavar="DIR",
        help="the plugin directory to write into (default: the first of [rosey] plugin_dirs, ./plugins)",
    )
    new.set_defaults(func=_new)

    test = sub.add_parser(
        "test",
        parents=[common],
        help="run one plugin's tests with pytest",
        description="Find plugin NAME as `rosey run` would and run its tests (test_*.py in its "
        "directory, or tests/test_NAME.py) with pytest in this Python; pytest's exit code is "
        "returned. Arguments after `--` go to pytest (rosey test hello -- -k greets -x).",
    )
    test.add_argument("name", help="plugin name, e.g. hello")
    test.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG", help="passed to pytest (after `--`)")
    test.set_defaults(func=_test)

    dev = sub.add_parser(
        "dev",
        parents=[common],
        help="run the bot with the console chat and restart a plugin whenever its file is saved",
        description="Like `rosey run`, plus a watcher: saving a plugin's file checks it (syntax, "
        "plugin class, name; nothing is run) and restarts that plugin within a second. A file "
        "that fails the check leaves the running version serving; the new version starts beside it "
        "(rosey reload), so one that fails to start (import error, exception in on_start) leaves the "
        "running version serving too. "
        "PATH: a plugin file or directory (run that plugin only), or a project directory "
        "(default: the current one).",
    )
    dev.add_argument("path", nargs="?", metavar="PATH", help="plugin file, plugin directory or project")
    dev.add_argument("--no-chat", action="store_true", help="do not read chat lines from the console")
    dev.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="override [rosey] log_level"
    )
    dev.set_defaults(func=_dev)
