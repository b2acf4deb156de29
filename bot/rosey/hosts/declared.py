"""What a host tells the hub about its plugins' declared commands: ``rosey.hosts.<host>.commands``.

The hub never reads a remote plugin's source, so its ``!help`` (and ``rosey plugins list``) learn
the commands from the host, which reads them with the same ``ast`` reader the hub uses for its
own plugins (:mod:`bot.rosey.plugins.declared_commands`). Every few heartbeats the host sends::

    {"plugins": {"weather": {"summary": "...", "commands": [{"name", "usage", "help", "aliases"}]}}}

A host is trusted for its own plugins only, and what it sends is input, not data: the hub keeps
only entries of the plugins it assigned to that host, at most ``MAX_COMMANDS`` commands each,
and rebuilds every command with the SDK's own :class:`~bot.rosey.plugins.commands.Command`, which
refuses what a plugin's source could not declare either (a bad name or usage, a help text that
is too long or holds control characters). What does not pass is left out and said once in the
hub's log; nothing a host sends can raise on the hub.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from bot.rosey.broker.leaf import host_commands_subject
from bot.rosey.errors import CommandDeclarationError
from bot.rosey.hosts.config import ClusterConfig
from bot.rosey.plugins.commands import MAX_ALIASES, MAX_COMMANDS, MAX_HELP_CHARS, Command, check_text
from bot.rosey.plugins.declared_commands import PluginCommands
from bot.rosey.terminal import printable

__all__ = [
    "MAX_COMMANDS_BYTES",
    "commands_file",
    "declared_from_wire",
    "declared_to_wire",
    "host_commands_subject",
    "read_commands_file",
    "remote_plugin_rows",
    "write_commands_file",
]

logger = logging.getLogger(__name__)

#: A host's commands message is refused above this size (64 plugins' worth of full declarations
#: is far less); the hub's NATS server caps it again at its max_payload.
MAX_COMMANDS_BYTES = 512 * 1024
_MAX_PROBLEMS = 20


def declared_to_wire(declared: Mapping[str, PluginCommands]) -> dict[str, Any]:
    """The host's side: its plugins' declarations, as read from their source."""
    return {
        "plugins": {
            name: {
                "summary": entry.summary,
                "commands": [
                    {"name": c.name, "usage": c.usage, "help": c.help, "aliases": list(c.aliases)}
                    for c in entry.commands
                ],
            }
            for name, entry in declared.items()
        }
    }


def declared_from_wire(
    data: object, allowed: Collection[str], *, host: str
) -> tuple[dict[str, PluginCommands], list[str]]:
    """The hub's side: the declarations of the plugins in ``allowed`` (those assigned to ``host``),
    each command checked by the SDK's rules, and what was left out (one line each, printable).
    Never raises."""
    found: dict[str, PluginCommands] = {}
    problems: list[str] = []
    plugins = data.get("plugins") if isinstance(data, Mapping) else None
    if not isinstance(plugins, Mapping):
        return found, [f"host {host}: its commands message is not {{'plugins': {{...}}}}"]
    for name, entry in plugins.items():
        if name not in allowed:
            problems.append(f"host {host}: ignored commands of {printable(str(name))[:40]!r}, not its plugin")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"host {host}: the commands of {name} are not an object")
            continue
        found[name] = _plugin(host, name, entry, problems)
    return found, [printable(p)[:300] for p in problems[:_MAX_PROBLEMS]]


def _plugin(host: str, name: str, entry: Mapping[str, Any], problems: list[str]) -> PluginCommands:
    summary = entry.get("summary", "")
    try:
        summary = check_text("summary", summary, MAX_HELP_CHARS)
    except CommandDeclarationError as exc:
        problems.append(f"host {host}: plugin {name}: {exc}")
        summary = ""
    raw = entry.get("commands")
    items = raw if isinstance(raw, list) else []
    if len(items) > MAX_COMMANDS:
        problems.append(f"host {host}: plugin {name}: {len(items)} commands; the first {MAX_COMMANDS} kept")
    commands: list[Command] = []
    for item in items[:MAX_COMMANDS]:
        command = _command(item)
        if isinstance(command, str):
            problems.append(f"host {host}: plugin {name}: {command}")
        elif any(command.name == c.name for c in commands):
            problems.append(f"host {host}: plugin {name}: command {command.name!r} twice")
        else:
            commands.append(command)
    return PluginCommands(plugin=name, commands=tuple(commands), summary=summary)


def _command(item: object) -> Command | str:
    """One command rebuilt by the SDK's own checks, or why it cannot be."""
    if not isinstance(item, Mapping):
        return "a command is not an object"
    name, usage, help_ = item.get("name"), item.get("usage", ""), item.get("help", "")
    aliases = item.get("aliases", [])
    if not isinstance(name, str) or not name:
        return "a command without a name"
    if (
        not isinstance(aliases, list)
        or len(aliases) > MAX_ALIASES
        or any(not isinstance(a, str) for a in aliases)
    ):
        return f"command {name[:40]!r}: aliases must be a list of at most {MAX_ALIASES} names"
    try:
        return Command(name, usage=usage, help=help_, aliases=tuple(aliases))
    except CommandDeclarationError as exc:  # what a plugin's source could not declare either
        return str(exc)
    except (TypeError, ValueError) as exc:
        return f"command {name[:40]!r}: {exc}"


# ---------------------------------------------------------------------- for `rosey plugins list`


def commands_file(state_dir: Path, host: str) -> Path:
    """Where the hub keeps what host ``host`` last reported (``rosey plugins list`` reads it)."""
    return state_dir / "hosts" / f"{host}.commands.json"


def write_commands_file(state_dir: Path, host: str, declared: Mapping[str, PluginCommands]) -> None:
    """Only what passed :func:`declared_from_wire`, written whole (a reader never sees half a file)."""
    path = commands_file(state_dir, host)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(declared_to_wire(declared)) + "\n")
    os.replace(partial, path)


def read_commands_file(
    state_dir: Path, host: str, allowed: Collection[str]
) -> dict[str, PluginCommands] | None:
    """What the hub last heard from ``host`` (checked again), or None if it never heard."""
    try:
        text = commands_file(state_dir, host).read_text()
        if len(text) > MAX_COMMANDS_BYTES:
            return None
        data = json.loads(text)
    except (OSError, ValueError):
        return None
    return declared_from_wire(data, allowed, host=host)[0]


def remote_plugin_rows(cluster: ClusterConfig, state_dir: Path, prefix: str) -> list[dict[str, Any]]:
    """``rosey plugins list`` on a hub: a row per plugin of ``[hosts.*]``, its commands as its host
    last reported them to this hub (the hub never reads a remote plugin's source)."""
    rows: list[dict[str, Any]] = []
    for host, entry in cluster.hosts.items():
        declared = read_commands_file(state_dir, host, entry.plugins)
        for name in entry.plugins:
            commands = declared.get(name) if declared is not None else None
            location = f"host {host}" + ("" if declared is not None else " (commands not reported yet)")
            rows.append(
                {
                    "name": name,
                    "enabled": True,
                    "source": "host",
                    "location": location,
                    "restart": "-",
                    "problem": None,
                    "commands": commands.as_dict(prefix) if commands is not None else [],
                }
            )
    return rows
