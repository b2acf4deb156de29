"""``!help`` in chat: the commands the asking user may run, and ``!help NAME`` for one's usage.

A built-in of the router, like ``!rosey``: the router answers it itself and no plugin gets the
word (a plugin named ``help`` is reported at start as unreachable from chat). What each plugin
offers comes from its declarations, read from source (:mod:`bot.rosey.plugins.declared_commands`);
who may run what is the router's own access check, handed in as ``refusal`` so that ``!help``
never lists a command the user would be refused. This module only renders text.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from bot.rosey.plugins.declared_commands import HELP_COMMAND, PluginCommands

__all__ = ["MAX_HELP_LINES", "PER_PLUGIN_LINES", "ChatHelp"]

#: At most this many lines in one ``!help`` answer; past it, the rest is counted, not shown.
MAX_HELP_LINES = 60
#: In the overview, at most this many lines per plugin: one plugin declaring 64 commands must not
#: push everybody else's out of ``!help`` (``!help NAME`` shows them all).
PER_PLUGIN_LINES = 8
_DASH = " — "


class ChatHelp:
    """Callable as the router's help command: ``help(args, refusal, admin)`` -> the reply.

    ``declared`` maps plugin name -> what its source declares; ``known`` lists the configured
    plugins (the router's own list); ``refusal(plugin)`` is the router's access check for the
    asking user (None: allowed); ``admin`` says whether to mention ``!rosey``.
    """

    def __init__(
        self,
        declared: Mapping[str, PluginCommands],
        known: Callable[[], Collection[str]],
        prefix: str = "!",
    ) -> None:
        self._declared = declared
        self._known = known
        self.prefix = prefix

    def __call__(self, args: list[str], refusal: Callable[[str], str | None], admin: bool = False) -> str:
        if not args:
            return self._overview(refusal, admin)
        name = args[0].removeprefix(self.prefix).lower()
        return self._one(name, args[1:], refusal, admin)

    def _overview(self, refusal: Callable[[str], str | None], admin: bool) -> str:
        p = self.prefix
        lines: list[str] = []
        for plugin in sorted(self._known()):
            if refusal(plugin) is not None:
                continue
            declared = self._declared.get(plugin)
            if declared is None or not declared.commands:
                summary = declared.summary if declared is not None else ""
                lines.append(f"{p}{plugin}{_DASH}{summary}" if summary else f"{p}{plugin}")
                continue
            commands = declared.commands
            if len(commands) > PER_PLUGIN_LINES:
                commands = commands[: PER_PLUGIN_LINES - 1]
            for command in commands:
                shown = command.invocation(plugin, p)
                lines.append(
                    f"{shown}{_DASH}{command.help}" if command.help else command.usage_line(plugin, p)
                )
            if hidden := len(declared.commands) - len(commands):
                lines.append(f"{p}{plugin} … {hidden} more: {p}{HELP_COMMAND} {plugin}")
        if admin:
            lines.append(f"{p}rosey{_DASH}bot admin: status, restart NAME, stop NAME, start NAME")
        if not lines:
            return f"no commands are available to you here ({p}{HELP_COMMAND} NAME to look one up)"
        if len(lines) > MAX_HELP_LINES:
            hidden = len(lines) - MAX_HELP_LINES + 1
            lines = [
                *lines[: MAX_HELP_LINES - 1],
                f"… and {hidden} more: {p}{HELP_COMMAND} NAME shows one plugin",
            ]
        return "\n".join([f"Commands you can use ({p}{HELP_COMMAND} NAME for usage):", *lines])

    def _one(self, name: str, rest: list[str], refusal: Callable[[str], str | None], admin: bool) -> str:
        p = self.prefix
        if name == HELP_COMMAND:
            what = "lists the commands you can use, or shows one's usage"
            return f"usage: {p}{HELP_COMMAND} [command]{_DASH}{what}"
        if name == "rosey" and admin:
            return f"usage: {p}rosey status | restart NAME | stop NAME | start NAME{_DASH}bot admin commands"
        if name not in set(self._known()):
            return f"no command {p}{name[:40]}; {p}{HELP_COMMAND} lists the commands you can use"
        refused = refusal(name)
        if refused is not None:
            return refused
        declared = self._declared.get(name)
        if declared is None or not declared.commands:
            summary = declared.summary if declared is not None else ""
            about = f"{_DASH}{summary}" if summary else ""
            return f"{p}{name}{about} (it declares no usage)"
        commands = declared.commands
        if rest:
            found = declared.find(rest[0])
            if found is None or found.name == name:
                return f"{p}{name} has no subcommand {rest[0][:40]!r}; {p}{HELP_COMMAND} {name} lists them"
            commands = (found,)
        lines = []
        for command in commands:
            line = f"usage: {command.usage_line(name, p)}"
            if command.aliases:
                line += f" (also: {', '.join(command.aliases)})"
            lines.append(f"{line}{_DASH}{command.help}" if command.help else line)
        if len(lines) > MAX_HELP_LINES:
            lines = [*lines[: MAX_HELP_LINES - 1], f"… and {len(lines) - MAX_HELP_LINES + 1} more"]
        return "\n".join(lines)
