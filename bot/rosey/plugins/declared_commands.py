"""A plugin's declared commands, read from its SOURCE: what ``!help`` and ``rosey plugins list`` show.

The core never imports plugin code (see :mod:`bot.rosey.plugins.plugin_registry`), so it learns
a plugin's commands the way it learns its name: ``ast`` reads the plugin class's ``commands =
{...}`` (or a tuple of ``Command(...)``) and its ``@command(...)`` methods, and takes only literal
values - strings, and tuples of strings for ``aliases``. Whatever is not literal (a constant
defined elsewhere, an f-string, ``**options``), too long, or holds control characters is reported
as a problem naming the file and line, and that command is left out of ``!help``; it is never
guessed, and nothing of the plugin runs. Each command is then checked by the SDK's own
:class:`~bot.rosey.plugins.commands.Command`, so the host and the plugin agree on what is valid.

Same-module base classes count, base first (a subclass's definition replaces its base's), as
at run time. A plugin whose base class lives in another module is read from its own body only.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.rosey.errors import CommandDeclarationError
from bot.rosey.plugins.commands import MAX_COMMANDS, MAX_HELP_CHARS, Command, check_text
from bot.rosey.plugins.plugin_registry import expr_name, find_plugin_class, parse_source, shown_path

__all__ = [
    "BUILTIN_COMMANDS",
    "HELP_COMMAND",
    "PluginCommands",
    "read_declared_commands",
    "reserved_name_problems",
]

logger = logging.getLogger(__name__)

#: The chat command Rosey answers itself with the list of commands (see services/chat_help.py).
HELP_COMMAND = "help"
#: Command words the router answers itself; a plugin of that name is never reached from chat.
BUILTIN_COMMANDS = (HELP_COMMAND, "rosey")
_KEYWORDS = ("name", "usage", "help", "aliases", "handler")
_ATTRIBUTE = "commands"
_DECORATOR = "command"
_CONSTRUCTOR = "Command"


@dataclass(frozen=True, kw_only=True)
class PluginCommands:
    """What one plugin's source declares: its commands (checked by the SDK's rules), a one-line
    ``summary`` (the class docstring's first line, for plugins that declare nothing) and the
    ``problems`` found reading them (one line each, with file and line)."""

    plugin: str
    commands: tuple[Command, ...] = ()
    summary: str = ""
    problems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(not c.name for c in self.commands):
            raise ValueError("every declared command needs its name")

    def find(self, word: str) -> Command | None:
        """The command ``word`` names: the main command (the plugin's name), a subcommand or an alias."""
        word = word.lower()
        for declared in self.commands:
            if word == declared.name or word in declared.aliases:
                return declared
        return None

    def as_dict(self, prefix: str = "!") -> list[dict[str, str]]:
        return [
            {"name": c.name, "usage": c.usage_line(self.plugin, prefix), "help": c.help}
            for c in self.commands
        ]


class _Reader:
    def __init__(self, plugin: str, path: Path) -> None:
        self.plugin = plugin
        self.path = path
        self.problems: list[str] = []

    def problem(self, node: ast.AST | None, text: str) -> None:
        line = getattr(node, "lineno", None)
        where = f"{shown_path(self.path)}:{line}" if line else shown_path(self.path)
        self.problems.append(f"{where}: plugin {self.plugin}: {text}")

    def string(self, node: ast.expr, what: str) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        self.problem(node, f"{what} is not a literal string; !help cannot show it (write the text itself)")
        return None

    def strings(self, node: ast.expr, what: str) -> tuple[str, ...] | None:
        if isinstance(node, ast.Tuple | ast.List) and len(node.elts) <= 64:
            values = [self.string(e, what) for e in node.elts]
            return None if any(v is None for v in values) else tuple(v for v in values if v is not None)
        self.problem(node, f"{what} is not a literal tuple of strings")
        return None

    def fields(self, call: ast.Call, what: str, *, name: str | None) -> dict[str, object] | None:
        """The literal keyword (and one positional name) arguments of ``Command(...)``/``@command(...)``."""
        values: dict[str, object] = {}
        if len(call.args) > 1 or any(isinstance(a, ast.Starred) for a in call.args):
            self.problem(call, f"{what}: give the name, then usage=, help=, aliases= by keyword")
            return None
        if call.args:
            values["name"] = self.string(call.args[0], f"{what}: the name")
        for keyword in call.keywords:
            if keyword.arg is None:
                self.problem(keyword.value, f"{what}: **{ast.unparse(keyword.value)[:40]} is not literal")
                return None
            if keyword.arg not in _KEYWORDS:
                self.problem(keyword.value, f"{what}: unknown argument {keyword.arg}=")
                return None
            reader = self.strings if keyword.arg == "aliases" else self.string
            values[keyword.arg] = reader(keyword.value, f"{what}: {keyword.arg}")
        if any(v is None for v in values.values()):
            return None
        if name is not None and values.setdefault("name", name) != name:
            self.problem(call, f"{what}: the key {name!r} and Command({values['name']!r}) differ")
            return None
        return values

    def command(self, values: dict[str, object], node: ast.AST, what: str) -> Command | None:
        try:
            return Command(
                str(values.get("name") or ""),
                usage=values.get("usage", ""),  # type: ignore[arg-type]  # checked by Command
                help=values.get("help", ""),  # type: ignore[arg-type]
                aliases=values.get("aliases", ()),  # type: ignore[arg-type]
            )
        except CommandDeclarationError as exc:
            self.problem(node, str(exc) if exc.command else f"{what}: {exc}")
            return None

    def attribute(self, value: ast.expr) -> list[Command]:
        """``commands = {"roll": Command(...)}`` or ``commands = (Command("roll", ...), ...)``."""
        found: list[Command] = []
        if isinstance(value, ast.Dict):
            if len(value.keys) > MAX_COMMANDS:
                self.problem(value, f"commands: {len(value.keys)} declared; at most {MAX_COMMANDS} are read")
            for key, item in list(zip(value.keys, value.values, strict=True))[:MAX_COMMANDS]:
                name = self.string(key, "commands: a key") if key is not None else None
                if name is None:
                    continue
                declared = self.call(item, f"command {name!r}", name=name)
                if declared is not None:
                    found.append(declared)
        elif isinstance(value, ast.Tuple | ast.List):
            if len(value.elts) > MAX_COMMANDS:
                self.problem(value, f"commands: {len(value.elts)} declared; at most {MAX_COMMANDS} are read")
            for item in value.elts[:MAX_COMMANDS]:
                declared = self.call(item, "commands", name=None)
                if declared is not None:
                    found.append(declared)
        else:
            self.problem(
                value, "commands is not a literal dict or tuple of Command(...); !help cannot show it"
            )
        return found

    def call(self, node: ast.expr, what: str, *, name: str | None) -> Command | None:
        if not (isinstance(node, ast.Call) and expr_name(node.func) == _CONSTRUCTOR):
            self.problem(node, f"{what}: not a Command(...)")
            return None
        first = node.args[0] if node.args else None
        if name is None and isinstance(first, ast.Constant) and isinstance(first.value, str):
            what = f"command {first.value[:40]!r}"  # the tuple form: name it in messages as well
        values = self.fields(node, what, name=name)
        if values is None:
            return None
        if not values.get("name"):
            self.problem(node, f"{what}: Command(...) needs its name")
            return None
        return self.command(values, node, what)

    def decorated(self, method: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[bool, Command | None]:
        """Whether ``method`` is a ``@command`` and, if it can be read, its declaration."""
        for decorator in method.decorator_list:
            if expr_name(decorator) != _DECORATOR:
                continue
            what = f"@command on {method.name}()"
            if not isinstance(decorator, ast.Call):  # bare @command: the method's name, no usage
                return True, self.command({"name": method.name.lower()}, decorator, what)
            values = self.fields(decorator, what, name=None)
            if values is None:
                return True, None
            values.setdefault("name", method.name.lower())
            return True, self.command(values, decorator, what)
        return False, None


def read_declared_commands(plugin: str, path: Path, class_name: str | None = None) -> PluginCommands:
    """Plugin ``plugin``'s declared commands, read from ``path`` (class ``class_name`` when an
    entry point names it). Never raises for what the file holds: problems are in the result."""
    reader = _Reader(plugin, path)
    try:
        tree = parse_source(path)
    except (SyntaxError, OSError, ValueError, RecursionError, MemoryError) as exc:
        # The registry reports the file itself; here it only means: no commands to show.
        logger.debug("cannot read the commands of %s in %s: %s", plugin, path, exc)
        return PluginCommands(plugin=plugin)
    node = find_plugin_class(tree, plugin, class_name)
    if node is None:
        return PluginCommands(plugin=plugin)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    attribute: list[Command] = []
    methods: dict[str, Command] = {}
    for klass in _base_first(node, classes):
        for stmt in klass.body:
            if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == _ATTRIBUTE for t in stmt.targets
            ):
                attribute = reader.attribute(stmt.value)
            elif (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and stmt.target.id == _ATTRIBUTE
                and stmt.value is not None
            ):
                attribute = reader.attribute(stmt.value)
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                is_command, declared = reader.decorated(stmt)
                methods.pop(stmt.name, None)
                if is_command and declared is not None:
                    methods[stmt.name] = declared
    commands = _unique(reader, [*attribute, *methods.values()][:MAX_COMMANDS], node)
    return PluginCommands(
        plugin=plugin, commands=commands, summary=_summary(node), problems=tuple(reader.problems)
    )


def reserved_name_problems(plugins: Iterable[str], prefix: str = "!") -> list[str]:
    """Plugins that chat cannot reach because the router answers their command word itself."""
    return [
        f"plugin {name!r} cannot be reached from chat: {prefix}{name} is Rosey's built-in; rename the plugin"
        for name in plugins
        if name in BUILTIN_COMMANDS
    ]


def _base_first(node: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> list[ast.ClassDef]:
    order: list[ast.ClassDef] = []
    seen: set[str] = set()

    def visit(klass: ast.ClassDef) -> None:
        if klass.name in seen:
            return
        seen.add(klass.name)
        for base in reversed(klass.bases):  # the first base wins, so it comes last
            if isinstance(base, ast.Name) and base.id in classes and base.id != klass.name:
                visit(classes[base.id])
        order.append(klass)

    visit(node)
    return order


def _unique(reader: _Reader, commands: list[Command], node: ast.ClassDef) -> tuple[Command, ...]:
    kept: list[Command] = []
    seen: set[str] = set()
    for declared in commands:
        words = (declared.name, *declared.aliases)
        clash = next((w for w in words if w in seen), None)
        if clash is not None:
            reader.problem(node, f"command name {clash!r} is declared twice; the first is kept")
            continue
        seen.update(words)
        kept.append(declared)
    return tuple(kept)


def _summary(node: ast.ClassDef) -> str:
    """The class docstring's first line, when it is fit for a one-line help (else nothing)."""
    docstring = ast.get_docstring(node) or ""
    line = next((s.strip() for s in docstring.splitlines() if s.strip()), "")
    if len(line) > MAX_HELP_CHARS:
        line = line[: MAX_HELP_CHARS - 1] + "…"
    try:
        return check_text("summary", line, MAX_HELP_CHARS)
    except CommandDeclarationError:
        return ""
