"""The first code a plugin process runs: ``python -m bot.rosey.plugins.launcher``.

It ties the process's life to its parent, applies the sandbox the runner put in ``ROSEY_SANDBOX``
(see :mod:`bot.rosey.plugins.sandbox`), and only then runs plugin code: a plugin file as
``__main__`` (exactly as ``python my_plugin.py`` would), or a ``module:Class`` entry point.
A plugin file without ``run_plugin(...)`` in its main block still runs if it defines exactly
one plugin class.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import runpy
import signal
import sys
from pathlib import Path

from bot.rosey.plugins.sandbox import apply_from_environment

PARENT_PID_ENV = "ROSEY_PARENT_PID"
_PR_SET_PDEATHSIG = 1
EXIT_USAGE = 2


def die_with_parent() -> None:
    """Get SIGKILL when the parent dies, even if the parent itself is SIGKILLed."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the supervisor's own stop path is all there is
    expected = os.environ.pop(PARENT_PID_ENV, None)
    # The parent may have died between fork and prctl; then nobody will ever signal us.
    if expected and os.getppid() != int(expected):
        os._exit(1)


def _run_file(path: Path) -> None:
    from bot.rosey.plugins import plugin_interface

    sys.argv = [str(path)]
    sys.path.insert(0, str(path.parent))
    namespace = runpy.run_path(str(path), run_name="__main__")
    if plugin_interface._run_plugin_called:
        return
    candidates = [
        value
        for value in namespace.values()
        if isinstance(value, type)
        and issubclass(value, plugin_interface.PluginInterface)
        and value is not plugin_interface.PluginInterface
        and value.__module__ == "__main__"
        and not getattr(value, "__abstractmethods__", None)
    ]
    if len(candidates) != 1:
        names = ", ".join(c.__name__ for c in candidates) or "none"
        sys.stderr.write(
            f"rosey: {path} did not call run_plugin() and defines {len(candidates)} plugin classes "
            f"({names}); add `if __name__ == \"__main__\": run_plugin(YourPlugin)`\n"
        )
        sys.exit(EXIT_USAGE)
    plugin_interface.run_plugin(candidates[0])


def _run_entry(entry: str) -> None:
    from bot.rosey.plugins import plugin_interface

    module_name, sep, class_name = entry.partition(":")
    if not sep or not module_name or not class_name:
        sys.stderr.write(f"rosey: entry {entry!r} must look like 'package.module:ClassName'\n")
        sys.exit(EXIT_USAGE)
    module = importlib.import_module(module_name)
    plugin_class = getattr(module, class_name, None)
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, plugin_interface.PluginInterface)):
        sys.stderr.write(f"rosey: {entry} is not a PluginInterface subclass\n")
        sys.exit(EXIT_USAGE)
    plugin_interface.run_plugin(plugin_class)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.rosey.plugins.launcher")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--path", type=Path, help="plugin file to run as __main__")
    target.add_argument("--entry", help="plugin class as 'package.module:ClassName'")
    args = parser.parse_args(argv)

    die_with_parent()
    report = apply_from_environment()  # before any plugin code: a no-op unless the runner set ROSEY_SANDBOX
    if report is not None:
        # The SDK reports this on liveness pings, so `rosey status` shows what is really active.
        os.environ["ROSEY_SANDBOX_APPLIED"] = ",".join(report.applied)
    if args.path is not None:
        _run_file(args.path.resolve())
    else:
        _run_entry(args.entry)


if __name__ == "__main__":
    main()
