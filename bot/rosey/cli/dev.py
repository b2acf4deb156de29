"""``rosey dev [PATH]``: ``rosey run`` with the console chat, restarting a plugin when its file is saved.

PATH says what to run: a plugin file (``plugins/hello.py``) or a plugin's own directory
(``plugins/hello/``, with ``plugin.py``): that plugin only; a project directory (with a
``rosey.toml`` or a ``plugins/`` directory): that project; any other directory: the plugins in
it. Without PATH: the current project, as ``rosey run`` would run it. The reload itself is
:mod:`bot.rosey.dev_reload`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
from pathlib import Path

from bot.rosey.cli.commands import setup_logging
from bot.rosey.cli.watch import watcher  # issue 16: shared with rosey run --watch
from bot.rosey.config import CONFIG_FILENAME, PluginConfig, RoseyConfig, load_config
from bot.rosey.errors import CliError
from bot.rosey.plugins.plugin_registry import PluginRegistry

__all__ = ["cmd_dev", "dev_config"]


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _plugin_name(file: Path) -> str:
    """The plugin_name in ``file``, read (never run) as discovery reads it."""
    registry = PluginRegistry(plugins_dir=file.parent, entry_point_group=None)
    registry.discover()
    for info in registry.infos.values():
        if info.file is not None and info.file.resolve() == file:
            return info.name
    for name, (path, _reason) in registry.load_failures.items():
        if path.resolve() == file:
            return name  # broken now; it starts on the first save that fixes it
    raise CliError(
        f"{_shown(file)} defines no plugin class (a PluginInterface subclass with a literal plugin_name)"
    )


def _only_plugin(config: RoseyConfig, file: Path) -> RoseyConfig:
    """``config`` running one plugin, from ``file`` (its [plugins.NAME] settings are kept)."""
    name = _plugin_name(file)
    settings = config.plugins.get(name) or PluginConfig(name=name, command_timeout=config.command_timeout)
    return dataclasses.replace(
        config,
        plugin_dirs=(),
        entry_points=False,
        plugins={name: dataclasses.replace(settings, path=file, module=None)},
    )


def dev_config(path: str | None, config_file: str | None) -> RoseyConfig:
    """The configuration ``rosey dev PATH`` runs (see the module docstring)."""
    if path is None:
        return load_config(config_file)
    target = Path(path).expanduser().resolve()
    if not target.exists():
        raise CliError(f"{path}: no such file or directory")
    if target.is_dir() and config_file is None:
        if (target / CONFIG_FILENAME).is_file() or (target / "plugins").is_dir():
            return load_config(base_dir=target)  # a project directory
    config = load_config(config_file)
    if target.is_file():
        if target.suffix != ".py":
            raise CliError(
                f"{path}: not a Python file; give a plugin file, a plugin's directory or a project"
            )
        return _only_plugin(config, target)
    if (target / "plugin.py").is_file():
        return _only_plugin(config, target / "plugin.py")
    return dataclasses.replace(config, plugin_dirs=(target,))


def cmd_dev(args: argparse.Namespace) -> int:
    from bot.rosey.cli.run import run_forever

    config = dev_config(args.path, args.config)
    setup_logging(args.log_level or config.log_level)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # "1 change detected": our line says more
    return asyncio.run(run_forever(config, chat=not args.no_chat, companion=watcher(config)))
