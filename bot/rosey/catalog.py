"""Which plugins ``rosey run`` manages: configuration and discovery merged into specs.

Sources, in order of precedence: ``[plugins.NAME]`` tables with a ``path`` or ``module``;
plugin files in the configured plugin directories; the ``rosey.plugins`` entry-point group.
A ``[plugins.NAME]`` table without ``path``/``module`` tunes a discovered plugin. With nothing
found at all, the bundled echo example runs, so a fresh ``rosey run`` is never empty.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

from bot.rosey.adapters.types import CUSTOM
from bot.rosey.config import AdapterConfig, PluginConfig, RoseyConfig
from bot.rosey.errors import ConfigError
from bot.rosey.plugins.declared_commands import PluginCommands, read_declared_commands, reserved_name_problems
from bot.rosey.plugins.plugin_registry import PluginRegistry, inspect_plugin_file, locate_plugin_module
from bot.rosey.supervision.spec import Limits, PluginSpec, ProcessKind

__all__ = ["ECHO_EXAMPLE", "Catalog", "build_catalog"]

logger = logging.getLogger(__name__)

ECHO_EXAMPLE = Path(__file__).resolve().parent / "plugins" / "examples" / "echo_plugin.py"


@dataclass(frozen=True, kw_only=True)
class Catalog:
    """Plugins (``specs``, ``configs``) and adapter processes (``adapters``, ``adapter_configs``)."""

    specs: tuple[PluginSpec, ...]
    configs: dict[str, PluginConfig]
    problems: tuple[str, ...] = ()
    module_files: dict[str, Path] = field(default_factory=dict)
    adapters: tuple[PluginSpec, ...] = ()
    adapter_configs: dict[str, AdapterConfig] = field(default_factory=dict)
    #: Each plugin's declared commands, read from its source (issue 15: ``!help``, ``plugins list``).
    commands: dict[str, PluginCommands] = field(default_factory=dict)

    @property
    def all_specs(self) -> tuple[PluginSpec, ...]:
        """Every process the supervisor runs: plugins, then adapters."""
        return self.specs + self.adapters


def _module_origin(module: str) -> Path | None:
    """The file of ``module`` (its parent packages are imported to find it, not the module)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def adapter_spec(adapter: AdapterConfig) -> PluginSpec:
    """An adapter process as the supervisor sees it: like a plugin, with its own limits."""
    kind = adapter.kind
    load_error = None
    if kind.library and importlib.util.find_spec(kind.library) is None:
        load_error = (
            f"the {adapter.type} adapter needs the {kind.library!r} library: "
            f"pip install 'rosey-bot[{kind.extra}]' (make run installs it)"
        )
    return PluginSpec(
        name=adapter.name,
        path=adapter.path,
        entry=adapter.entry,
        enabled=adapter.enabled,
        restart=adapter.restart,
        limits=Limits(
            max_memory_mb=adapter.max_memory_mb,
            max_cpu_percent=90.0,
            max_output_bytes_per_second=1024 * 1024,
            max_output_lines_per_second=2000,
            max_open_files=256,
            max_threads=64,
            max_publish_rate=50_000.0,
            max_publish_bytes_rate=50_000_000.0,
            max_subscriptions=100,
        ),
        source="config",
        load_error=load_error,
        kind=ProcessKind.ADAPTER,
    )


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


def _declared_commands(
    specs: list[PluginSpec], module_files: dict[str, Path], foreign: frozenset[str]
) -> dict[str, PluginCommands]:
    """Declared commands of every Python plugin that can run, read statically (no plugin code runs).
    A plugin in another language (``foreign``: it has a ``command``) has no Python source to read."""
    found = {}
    for spec in specs:
        path = spec.path or module_files.get(spec.name)
        if spec.load_error is None and path is not None and spec.name not in foreign:
            class_name = spec.entry.partition(":")[2] if spec.entry else ""
            found[spec.name] = read_declared_commands(spec.name, path, class_name or None)
    return found


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
    # s-remote: on the hub, a plugin of [hosts.*] runs on its host only: its [plugins.NAME] here
    # holds the hub's part (its services' grants, who may run it), and a file of that name found
    # here is not started.
    # s-spread: a plugin of [hub] also_runs runs here too (the hub's own replicas).
    cluster = config.cluster
    remote = (
        {p: h for p, h in cluster.remote_plugins.items() if p not in cluster.hub.also_runs}
        if cluster.host is None
        else {}
    )
    for name, plugin in config.plugins.items():
        if name in remote:
            continue
        if plugin.path is not None:
            # The same file discovered in a plugin directory under its own plugin_name must not
            # start a second time: the configured entry is the one that runs.
            for other, (other_path, _, source) in list(found.items()):
                if other != name and source != "config" and other_path == plugin.path:
                    del found[other]
            found[name] = (plugin.path, None, "config")
            # A program in another language (`command`) is not Python: nothing to inspect.
            if not plugin.command and (problem := inspect_plugin_file(plugin.path, name)) is not None:
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
    for name in remote:  # s-remote
        if found.pop(name, None) is not None:
            where = f"host {remote[name]!r} ([hosts])"
            problems.append(f"plugin {name!r} found here is on {where}: not started here")
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
                replicas=plugin_config.replicas,  # issue 16
            )
        )
    adapters = {name: a for name, a in config.adapters.items() if a.is_process}
    for name in adapters:
        if name in configs:
            key = f"adapters.{name}"
            raise ConfigError(
                f"{config.source}: {key}: a plugin named {name!r} was found too "
                f"({found[name][0] or found[name][1]}); adapter and plugin names must differ",
                key=key,
                file=config.source,
            )
    for name, adapter in adapters.items():
        if adapter.type == CUSTOM and adapter.entry is not None:  # let it read its package
            origin = _module_origin(adapter.entry.partition(":")[0])
            if origin is not None:
                module_files[name] = origin
    foreign = frozenset(name for name, plugin in config.plugins.items() if plugin.command)
    commands = _declared_commands(specs, module_files, foreign)
    for declared in commands.values():
        problems.extend(declared.problems)
    problems.extend(reserved_name_problems(configs, config.chat.prefix))
    return Catalog(
        commands=commands,
        specs=tuple(specs),
        configs=configs,
        problems=tuple(problems),
        module_files=module_files,
        adapters=tuple(adapter_spec(a) for a in adapters.values()),
        adapter_configs=adapters,
    )
