"""Which plugins ``rosey run`` manages: configuration and discovery merged into specs.

Sources, in order of precedence: ``[plugins.NAME]`` tables with a ``path`` or ``module``;
plugin files in the configured plugin directories; the ``rosey.plugins`` entry-point group.
A ``[plugins.NAME]`` table without ``path``/``module`` tunes a discovered plugin. With nothing
found at all, the bundled echo example runs, so a fresh ``rosey run`` is never empty.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from bot.rosey.config import PluginConfig, RoseyConfig
from bot.rosey.errors import ConfigError
from bot.rosey.plugins.plugin_registry import PluginRegistry, inspect_plugin_file, locate_plugin_module
from bot.rosey.supervision.spec import PluginSpec

__all__ = ["ECHO_EXAMPLE", "Catalog", "build_catalog"]

logger = logging.getLogger(__name__)

ECHO_EXAMPLE = Path(__file__).resolve().parent / "plugins" / "examples" / "echo_plugin.py"


@dataclass(frozen=True, kw_only=True)
class Catalog:
    specs: tuple[PluginSpec, ...]
    configs: dict[str, PluginConfig]
    problems: tuple[str, ...] = ()
    module_files: dict[str, Path] = field(default_factory=dict)


def discover(config: RoseyConfig) -> PluginRegistry:
    """Statically discover plugins (no plugin code runs here) in dirs and entry points."""
    dirs = [d for d in config.plugin_dirs if d.is_dir()]
    registry = PluginRegistry(
        plugins_dir=str(dirs[0]) if dirs else None,
        plugin_dirs=dirs[1:],
        entry_point_group="rosey.plugins" if config.entry_points else None,
        include_examples=True,
        search_default_dir=bool(dirs),
    )
    registry.discover()
    return registry


def build_catalog(config: RoseyConfig, registry: PluginRegistry | None = None) -> Catalog:
    registry = registry if registry is not None else discover(config)
    problems = list(registry.problems)
    found: dict[str, tuple[Path | None, str | None, str]] = {}
    module_files: dict[str, Path] = {}  # source of module plugins: the sandbox lets them read it
    for name, info in registry.infos.items():
        found[name] = (info.file if info.entry is None else None, info.entry, info.source)
        if info.entry is not None and info.file is not None:
            module_files[name] = info.file
    load_errors: dict[str, str] = {}  # plugins that cannot run at all: shown as failed, with why
    bare: list[str] = []  # [plugins.NAME] tables that only tune a plugin found elsewhere
    for name, plugin in config.plugins.items():
        if plugin.path is not None:
            # The same file discovered in a plugin directory under its own plugin_name must not
            # start a second time: the configured entry is the one that runs.
            for other, (other_path, _, source) in list(found.items()):
                if other != name and source != "config" and other_path == plugin.path:
                    del found[other]
            found[name] = (plugin.path, None, "config")
            if (problem := inspect_plugin_file(plugin.path, name)) is not None:
                load_errors[name] = problem
        elif plugin.module is not None:
            module, _, class_name = plugin.module.partition(":")
            try:
                class_name, module_file = locate_plugin_module(module, class_name or None)
            except (LookupError, OSError, SyntaxError, ValueError) as exc:
                key = f"plugins.{name}.module"
                raise ConfigError(f"{config.source}: {key}: {exc}", key=key, file=config.source) from exc
            found[name] = (None, f"{module}:{class_name}", "config")
            if module_file is not None:
                module_files[name] = module_file
        elif name not in found:
            bare.append(name)
    for name, (file, problem) in registry.load_failures.items():
        if name not in found:  # a discovered file that does not even parse
            found[name] = (file, None, "directory")
            load_errors[name] = problem
    if not found:
        logger.info("no plugins configured or discovered; running the bundled echo example")
        found["echo"] = (ECHO_EXAMPLE, None, "example")
    for name in bare:
        if name not in found:  # a bare [plugins.echo] table tunes the bundled example
            problems.append(
                f"[plugins.{name}] in {config.source} has no path or module and no plugin named "
                f"{name!r} was discovered"
            )

    specs = []
    configs: dict[str, PluginConfig] = {}
    for name, (path, entry, source) in found.items():
        plugin_config = config.plugin(name)
        configs[name] = plugin_config
        specs.append(
            PluginSpec(
                name=name,
                path=path,
                entry=entry,
                enabled=plugin_config.enabled,
                restart=plugin_config.restart,
                limits=plugin_config.limits,
                source=source,
                load_error=load_errors.get(name),
            )
        )
    return Catalog(
        specs=tuple(specs),
        configs=configs,
        problems=tuple(problems),
        module_files=module_files,
    )
