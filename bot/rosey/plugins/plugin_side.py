"""Which of Rosey's modules run inside a plugin process, and which only in the host.

One list, two readers: the house rules (``tests/architecture.py``: the plugin-process side never
imports host code) and the import guard of every plugin process
(:mod:`bot.rosey.plugins.host_guard`: plugin code that imports anything else of Rosey is told
why, and refused). A module added to the plugin side here is importable by plugins at once, and
held to the house rules at once.

Plugin processes import this module: the standard library only, and nothing at all here.
"""

from __future__ import annotations

__all__ = ["HOST_ONLY", "PLUGIN_PROCESS_SIDE", "ROOT_PACKAGE", "runs_in_plugin_process"]

ROOT_PACKAGE = "bot.rosey"

#: Modules that run inside plugin processes (prefixes, relative to bot.rosey): the SDK and its
#: clients, the wire (``core``), the exception tree, and what a plugin process runs before plugin
#: code (launcher, zygote child, contract, sandbox).
PLUGIN_PROCESS_SIDE = (
    "core",
    "errors",
    "linux",
    "plugins.plugin_interface",
    "plugins.http_client",
    "plugins.launcher",
    "plugins.zygote_child",
    "plugins.zygote_warmup",  # issue 17
    "plugins.contract",
    "plugins.command_stats",
    "plugins.commands",
    "plugins.storage_client",
    "plugins.files_client",
    "plugins.permissions",  # the SDK's Requests(...) declaration
    "plugins.sandbox",
    "plugins.tracebacks",
    "plugins.plugin_side",
    "plugins.hints",
    "plugins.host_guard",
    "plugins.loop_watch",
    "plugins.examples",
    # Adapter processes run under the same launcher and sandbox as plugins; each platform's
    # module (adapters.irc, adapters.matrix, ...) is added here as it lands.
    "adapters.chat_adapter",
    "adapters.outbox",
    "adapters.irc",
    "adapters.irc_client",
    "adapters.irc_protocol",
    "adapters.matrix",
    "adapters.matrix_events",
    "adapters.matrix_format",
    "adapters.matrix_settings",
    "adapters.matrix_state",
    "adapters.discord",
    "adapters.slack",
    "adapters.cytube",
    "adapters.cytube_limits",
    "adapters.cytube_text",
)

#: What the plugin-process side must never import (the house rules). The import guard is
#: stricter: plugin code may import nothing of Rosey outside :data:`PLUGIN_PROCESS_SIDE`.
HOST_ONLY = (
    "supervision",
    "services",
    "broker",
    "adapters.console",
    "config",
    "catalog",
    "grants",
    "gateway_config",
    "files_config",
    "runtime",
    "app",
    "cli",
    "testing",
    "plugins.process",
    "plugins.plugin_runner",
    "plugins.plugin_registry",
    "plugins.declared_requests",  # reads plugin source; the plugin side never needs it
    "grant_review",
    "hosts",  # s-host: the hub's and a host's side of several machines
)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def runs_in_plugin_process(module: str) -> bool:
    """Whether ``module`` (absolute, e.g. ``bot.rosey.core.events``) may be imported by plugin code.

    True for the plugin-process side, for the packages on the way to it (``bot.rosey``,
    ``bot.rosey.plugins``, ``bot.rosey.adapters``), and for anything outside Rosey.
    """
    if not module.startswith(ROOT_PACKAGE + "."):
        return True  # bot.rosey itself, bot, and every other package
    relative = module[len(ROOT_PACKAGE) + 1 :]
    return any(_within(relative, side) or side.startswith(relative + ".") for side in PLUGIN_PROCESS_SIDE)
