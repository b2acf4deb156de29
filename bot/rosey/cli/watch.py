"""The reload-on-save watcher of ``rosey dev`` and ``rosey run --watch`` (issue 16): each saved plugin
file is checked, then its plugin reloaded (see :mod:`bot.rosey.dev_reload`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.rosey.app import RoseyApp
from bot.rosey.config import RoseyConfig
from bot.rosey.dev_reload import DevReloader, ReloadOutcome, ReloadResult, watched_plugins

__all__ = ["watcher"]


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _report(result: ReloadResult) -> None:
    stream = sys.stdout if result.outcome is ReloadOutcome.RELOADED else sys.stderr
    print(result.line(), file=stream, flush=True)


def _new_file(path: Path) -> None:
    print(
        f"rosey dev: {_shown(path)} belongs to no running plugin; "
        "a new plugin runs once `rosey dev` is restarted",
        file=sys.stderr,
        flush=True,
    )


def watcher(config: RoseyConfig) -> Callable[[RoseyApp], Awaitable[None]]:
    """Reload each plugin on save while the bot runs (``rosey dev``, ``rosey run --watch``)."""

    async def watch(app: RoseyApp) -> None:
        assert app.supervisor is not None
        plugins = watched_plugins(app.catalog.specs, config.plugin_dirs, config.base_dir)
        reloader = DevReloader(
            app.supervisor, plugins, report=_report, watch_dirs=config.plugin_dirs, on_unknown=_new_file
        )

        def ready(roots: list[Path]) -> None:
            names = ", ".join(p.name for p in plugins) or "none"
            where = ", ".join(_shown(root) + "/" for root in roots) or "nothing"
            print(
                f"rosey dev: watching {len(plugins)} plugin(s) ({names}) in {where}; "
                "saving a file reloads its plugin",
                flush=True,
            )

        await reloader.watch(on_ready=ready)

    return watch
