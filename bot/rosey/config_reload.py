"""issue 16: what a changed ``rosey.toml`` changes among the plugins, compared before anything is done.

``rosey reload`` (no NAME) re-reads the file; a file that does not load changes nothing. Then
:func:`compare` says which plugins are new (started), gone (stopped), changed (their new settings
apply at their next start) or have another number of replicas (restarted with it). The app
applies the result (``RoseyApp.reload_config``); this module only compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.rosey.catalog import Catalog
from bot.rosey.config import PluginConfig

__all__ = ["ConfigChanges", "compare", "needs_full_restart"]

#: Settings the bot reads once, at its start (the router's access rules and timeouts, the storage,
#: HTTP and files services' grants): a reload that changes them, or adds a plugin that sets them,
#: is refused as a whole, rather than leave a plugin open that the file says is restricted.
START_ONLY = ("platforms", "channels", "min_role", "command_timeout", "storage", "http", "files")


@dataclass(frozen=True, kw_only=True)
class ConfigChanges:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    regrouped: tuple[str, ...] = ()  # another number of replicas

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.regrouped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": list(self.added),
            "stopped": list(self.removed),
            "changed": list(self.changed),
            "restarted": list(self.regrouped),
        }


def compare(old: Catalog, new: Catalog) -> ConfigChanges:
    """The plugins (not adapters) ``new`` adds, removes or changes against ``old``."""
    before = {spec.name: spec for spec in old.specs}
    after = {spec.name: spec for spec in new.specs}
    changed, regrouped = [], []
    for name in sorted(before.keys() & after.keys()):
        if before[name].replicas != after[name].replicas:
            regrouped.append(name)
        elif before[name] != after[name] or old.configs.get(name) != new.configs.get(name):
            changed.append(name)
    return ConfigChanges(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        changed=tuple(changed),
        regrouped=tuple(regrouped),
    )


def needs_full_restart(old: Catalog, new: Catalog, default_timeout: float) -> list[str]:
    """``plugin.setting`` for each start-only setting (:data:`START_ONLY`) ``new`` changes, or sets
    for a plugin it adds; empty when the reload may go ahead."""
    found = []
    for name, config in sorted(new.configs.items()):
        before = old.configs.get(name) or PluginConfig(name=name, command_timeout=default_timeout)
        found += [f"{name}.{key}" for key in START_ONLY if getattr(config, key) != getattr(before, key)]
    return found
