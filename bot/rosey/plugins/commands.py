"""Declared commands: a plugin's commands with their usage and a one-line description.

A plugin declares them with a class attribute, a decorator, or both::

    class Dice(PluginInterface):
        plugin_name = "roll"
        commands = {"roll": Command(usage="[NdS...]", help="Roll dice, e.g. !roll 2d6+3")}

    class Trivia(PluginInterface):
        plugin_name = "trivia"

        @command("answer", usage="<text...>", help="Answer the open question", aliases=("a",))
        async def answer(self, event: Event, args: Args) -> str:
            return f"you said {args.text('text')}"

The command word is still the plugin's name (``!roll``, ``!trivia``): a command named like the
plugin is its main command and takes all the arguments; any other name is a subcommand, picked
by the first argument (``!trivia answer paris``). Before a declared command runs, this module
checks its arguments against its usage and, when they do not fit, answers ``usage: !roll
[NdS...] (...)`` itself, as a normal reply, without calling the plugin's code.

Usage grammar, the whole of it (space-separated)::

    <name>        a required word            [name]        an optional word
    <name...>     one or more words (last)   [name...]     zero or more words (last)
    <name:int>    a whole number             <a|b|c>       one of these words (any case)

A decorated method is called as ``await method(event, args)`` with the checked :class:`Args`; a
str it returns is sent as the reply (a dict is sent as the result data; None: it answered
itself); raising :class:`~bot.rosey.errors.UsageError` answers with the usage line and its text.
A command declared only in ``commands`` is checked, then passed to ``handle_command`` as before.
A plugin that declares nothing works exactly as the seed's API says.

Rosey also reads these declarations from the plugin's SOURCE, without running it
(:mod:`bot.rosey.plugins.declared_commands`), for ``!help`` and ``rosey plugins list``: keep the
values literal strings there. Plugin-process side: imports nothing of the host.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar, overload

from bot.rosey.core.events import Event
from bot.rosey.errors import CommandDeclarationError, UsageError

__all__ = [
    "MAX_COMMANDS",
    "MAX_HELP_CHARS",
    "MAX_USAGE_CHARS",
    "Args",
    "Command",
    "CommandTable",
    "Param",
    "ParamKind",
    "command",
    "route_command",
]

#: A plugin declares at most this many commands; help text and usage are one short line each.
MAX_COMMANDS = 64
MAX_HELP_CHARS = 200
MAX_USAGE_CHARS = 200
MAX_ALIASES = 8
DEFAULT_PREFIX = "!"

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_TOKEN = re.compile(
    r"(?P<open>[<\[])(?P<name>[^<>\[\]\s:]+?)(?::(?P<kind>int))?(?P<rest>\.\.\.)?(?P<close>[>\]])"
)
# Unicode categories no one-line help may hold: controls (newlines, ESC), format characters (bidi
# overrides that reorder the rest of a chat line), line/paragraph separators, surrogates.
_FORBIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Attribute a @command-decorated function carries.
MARK = "__rosey_command__"

ArgValue = str | int | tuple[str, ...] | tuple[int, ...] | None
_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


class ParamKind(StrEnum):
    WORD = "word"
    INT = "int"


@dataclass(frozen=True, kw_only=True)
class Param:
    """One argument of a usage: ``<name>``, ``[name]``, ``<name...>``, ``<n:int>``, ``<a|b>``."""

    name: str
    required: bool
    rest: bool = False
    kind: ParamKind = ParamKind.WORD
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a usage argument needs a name")
        if self.choices and self.kind is not ParamKind.WORD:
            raise ValueError(f"{self.name}: choices are words, not numbers")

    def __str__(self) -> str:
        # As users see it: the type is checked, not shown ("<count>", "count must be a whole number").
        inner = f"{self.name}{'...' if self.rest else ''}"
        return f"<{inner}>" if self.required else f"[{inner}]"

    def convert(self, word: str) -> str | int:
        if self.kind is ParamKind.INT:
            try:
                return int(word)
            except ValueError:
                raise UsageError(f"{self.name} must be a whole number, not {word!r}") from None
        if self.choices:
            for choice in self.choices:
                if word.lower() == choice.lower():
                    return choice
            raise UsageError(f"{word!r} is not one of {', '.join(self.choices)}")
        return word


def check_text(what: str, text: object, limit: int) -> str:
    """``text`` as a declaration may hold it: a str of one line, at most ``limit`` characters."""
    if not isinstance(text, str):
        raise CommandDeclarationError(f"{what} must be a string, got {type(text).__name__}")
    if len(text) > limit:
        raise CommandDeclarationError(f"{what} is {len(text)} characters; at most {limit}")
    bad = next((c for c in text if unicodedata.category(c) in _FORBIDDEN), None)
    if bad is not None:
        raise CommandDeclarationError(
            f"{what} holds the control character U+{ord(bad):04X}; it must be one plain line"
        )
    return text


def check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CommandDeclarationError(
            f"{what} {name!r} is not a command name: 1-32 lower-case letters, digits, '_' or '-'"
        )
    return name


def parse_usage(usage: str) -> tuple[Param, ...]:
    """The arguments a usage string describes; raises CommandDeclarationError saying what is wrong."""
    check_text("usage", usage, MAX_USAGE_CHARS)
    params: list[Param] = []
    for token in usage.split():
        match = _TOKEN.fullmatch(token)
        if match is None or {"<": ">", "[": "]"}[match["open"]] != match["close"]:
            raise CommandDeclarationError(
                f"usage {usage!r}: {token!r} is not <required>, [optional], <rest...>, <n:int> or <a|b>"
            )
        if params and params[-1].rest:
            raise CommandDeclarationError(f"usage {usage!r}: {params[-1]} must come last")
        required = match["open"] == "<"
        if required and params and not params[-1].required:
            raise CommandDeclarationError(f"usage {usage!r}: {token} follows an optional argument")
        name = match["name"]
        choices = tuple(c for c in name.split("|")) if "|" in name else ()
        if any(not c for c in choices):
            raise CommandDeclarationError(f"usage {usage!r}: {token} has an empty choice")
        if any(p.name == name for p in params):
            raise CommandDeclarationError(f"usage {usage!r}: {name!r} appears twice")
        kind = ParamKind.INT if match["kind"] else ParamKind.WORD
        try:
            params.append(
                Param(name=name, required=required, rest=bool(match["rest"]), kind=kind, choices=choices)
            )
        except ValueError as exc:
            raise CommandDeclarationError(f"usage {usage!r}: {exc}") from None
    return tuple(params)


class Args(Mapping[str, ArgValue]):
    """The checked arguments of a declared command, by the names in its usage.

    A missing optional argument is None, a missing ``[rest...]`` is ``()``; ``<n:int>`` is an int.
    ``words`` holds the words as typed (after the subcommand); ``text(name)`` joins a rest argument.
    """

    __slots__ = ("_values", "words")

    def __init__(self, values: Mapping[str, ArgValue], words: Sequence[str]) -> None:
        self._values = dict(values)
        self.words = tuple(words)

    def __getitem__(self, name: str) -> ArgValue:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Args({self._values!r})"

    def number(self, name: str, default: int = 0) -> int:
        """A ``<name:int>`` argument as an int (``default`` when an optional one was left out)."""
        value = self._values.get(name)
        return value if isinstance(value, int) else default

    def word(self, name: str, default: str = "") -> str:
        """A one-word argument as a str (``default`` when an optional one was left out)."""
        value = self._values.get(name)
        return value if isinstance(value, str) else default

    def text(self, name: str) -> str:
        """The argument as one string: a rest argument's words joined by spaces, None as ''."""
        value = self._values.get(name)
        if value is None:
            return ""
        if isinstance(value, tuple):
            return " ".join(str(v) for v in value)
        return str(value)


def check_args(params: Sequence[Param], words: Sequence[str]) -> Args:
    """Fit ``words`` to ``params``; raise UsageError saying what does not fit."""
    values: dict[str, ArgValue] = {}
    position = 0
    for param in params:
        if param.rest:
            taken = list(words[position:])
            position = len(words)
            if param.required and not taken:
                raise UsageError(f"missing {param}")
            converted = [param.convert(w) for w in taken]
            values[param.name] = tuple(converted)  # type: ignore[assignment]  # all str or all int
            continue
        if position >= len(words):
            if param.required:
                raise UsageError(f"missing {param}")
            values[param.name] = None
            continue
        values[param.name] = param.convert(words[position])
        position += 1
    if position < len(words):
        extra = len(words) - position
        raise UsageError(f"{extra} argument{'s' if extra != 1 else ''} too many")
    return Args(values, words)


@dataclass(frozen=True)
class Command:
    """One declared command: ``Command("roll", usage="[NdS...]", help="Roll dice")``.

    ``name`` may be left out where a ``commands`` dict's key gives it. ``usage`` describes the
    arguments only (see the module's grammar); ``help`` is one line, at most 200 characters.
    ``aliases`` are other words for a subcommand (``!trivia a`` for ``!trivia answer``).
    ``handler`` names the method to call (``@command`` sets it); without one, ``handle_command``
    gets the command after the check.
    """

    name: str = ""
    _: KW_ONLY
    usage: str = ""
    help: str = ""
    aliases: tuple[str, ...] = ()
    handler: str | None = None
    params: tuple[Param, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"command {self.name!r}" if self.name else "command"
        if self.name:
            check_name("command", self.name)
        if isinstance(self.aliases, str) or not isinstance(self.aliases, Sequence):
            raise CommandDeclarationError(f"{where}: aliases must be a tuple of names", command=self.name)
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if len(self.aliases) > MAX_ALIASES:
            raise CommandDeclarationError(f"{where}: at most {MAX_ALIASES} aliases", command=self.name)
        for alias in self.aliases:
            check_name(f"{where}: alias", alias)
        try:
            check_text("help", self.help, MAX_HELP_CHARS)
            params = parse_usage(self.usage)
        except CommandDeclarationError as exc:
            raise CommandDeclarationError(f"{where}: {exc}", command=self.name) from None
        if self.handler is not None and not (isinstance(self.handler, str) and self.handler.isidentifier()):
            raise CommandDeclarationError(f"{where}: handler must name a method", command=self.name)
        object.__setattr__(self, "params", params)

    def named(self, name: str) -> Command:
        return dataclasses.replace(self, name=name)

    def check(self, words: Sequence[str]) -> Args:
        return check_args(self.params, words)

    def invocation(self, plugin: str, prefix: str = DEFAULT_PREFIX) -> str:
        """What a user types: ``!roll`` for a main command, ``!trivia answer`` for a subcommand."""
        return f"{prefix}{plugin}" if self.name == plugin else f"{prefix}{plugin} {self.name}"

    def usage_line(self, plugin: str, prefix: str = DEFAULT_PREFIX) -> str:
        """``!roll [NdS...]``: the invocation and its arguments."""
        shown = " ".join(str(p) for p in self.params)
        return f"{self.invocation(plugin, prefix)} {shown}".rstrip()


@overload
def command(name: _F, /) -> _F: ...


@overload
def command(
    name: str | None = None, *, usage: str = "", help: str = "", aliases: Sequence[str] = ()
) -> Callable[[_F], _F]: ...


def command(
    name: str | _F | None = None, *, usage: str = "", help: str = "", aliases: Sequence[str] = ()
) -> Callable[[_F], _F] | _F:
    """Declare the decorated method as command ``name`` (default: the method's name).

    The method is called as ``await method(event, args)`` once its arguments fit ``usage``.
    ``@command`` without parentheses declares a command of the method's name without arguments.
    """
    if callable(name):  # bare @command
        return command()(name)

    def mark(method: _F) -> _F:
        declared = Command(
            name if isinstance(name, str) and name else method.__name__.lower(),
            usage=usage,
            help=help,
            aliases=tuple(aliases),
            handler=method.__name__,
        )
        setattr(method, MARK, declared)
        return method

    return mark


@dataclass(frozen=True, kw_only=True)
class CommandTable:
    """A plugin's declared commands, checked as a whole: no name or alias used twice."""

    plugin: str
    commands: tuple[Command, ...]

    def __post_init__(self) -> None:
        if len(self.commands) > MAX_COMMANDS:
            raise CommandDeclarationError(f"{len(self.commands)} commands declared; at most {MAX_COMMANDS}")
        seen: set[str] = set()
        for declared in self.commands:
            if not declared.name:
                raise CommandDeclarationError("a command in a tuple needs its name: Command('roll', ...)")
            for word in (declared.name, *declared.aliases):
                if word in seen:
                    raise CommandDeclarationError(f"command name {word!r} is declared twice", command=word)
                seen.add(word)

    @classmethod
    def of(cls, plugin_cls: type, plugin: str) -> CommandTable:
        """The commands ``plugin_cls`` declares (its ``commands`` attribute and ``@command`` methods)."""
        found = [*_from_attribute(getattr(plugin_cls, "commands", ())), *_from_methods(plugin_cls)]
        for declared in found:
            if declared.handler is not None and not callable(getattr(plugin_cls, declared.handler, None)):
                raise CommandDeclarationError(
                    f"command {declared.name!r}: handler {declared.handler!r} is no method of the plugin",
                    command=declared.name,
                )
        return cls(plugin=plugin, commands=tuple(found))

    @property
    def main(self) -> Command | None:
        return next((c for c in self.commands if c.name == self.plugin), None)

    def match(self, args: Sequence[str]) -> tuple[Command, list[str]] | None:
        """The command ``args`` ask for and its words: a subcommand by its first word, else the main
        command with every word; None when neither fits."""
        if args:
            word = args[0].lower()
            for declared in self.commands:
                if declared.name != self.plugin and (word == declared.name or word in declared.aliases):
                    return declared, list(args[1:])
        main = self.main
        return (main, list(args)) if main is not None else None

    def usage(self, prefix: str = DEFAULT_PREFIX) -> str:
        """``usage: !trivia start | !trivia answer <text...>``: every command, on one line."""
        return "usage: " + " | ".join(c.usage_line(self.plugin, prefix) for c in self.commands)


def _from_attribute(raw: object) -> list[Command]:
    """``commands = {...}`` or ``(Command(...), ...)``; anything holding no Command is no declaration
    (a seed-era plugin may well have its own ``commands`` attribute)."""
    if isinstance(raw, Mapping):
        items = list(raw.items())
        if not any(isinstance(v, Command) for _, v in items):
            return []
        found = []
        for key, value in items:
            if not isinstance(value, Command):
                raise CommandDeclarationError(f"commands[{key!r}] must be a Command(...)")
            if value.name and value.name != key:
                raise CommandDeclarationError(
                    f"commands[{key!r}] is Command({value.name!r}): make them match"
                )
            found.append(value.named(check_name("command", key)))
        return found
    if isinstance(raw, Sequence) and not isinstance(raw, str | bytes):
        values = list(raw)
        if not any(isinstance(v, Command) for v in values):
            return []
        if not all(isinstance(v, Command) for v in values):
            raise CommandDeclarationError("commands must hold only Command(...) values")
        return values
    return []


def _from_methods(plugin_cls: type) -> list[Command]:
    by_attribute: dict[str, Command] = {}
    for klass in reversed(plugin_cls.__mro__):  # a subclass's definition replaces its base's
        for attribute, value in vars(klass).items():
            declared = getattr(value, MARK, None)
            if isinstance(declared, Command):
                by_attribute[attribute] = declared
            else:
                by_attribute.pop(attribute, None)
    return list(by_attribute.values())


class _Plugin(Protocol):
    @property
    def plugin_name(self) -> str: ...

    async def handle_command(self, event: Event) -> None: ...

    async def publish_result(
        self,
        data: dict[str, Any],
        correlation_id: str | None = None,
        response_channel: dict[str, Any] | None = None,
    ) -> None: ...


def prefix_of(event: Event) -> str:
    """The chat's command prefix (the router sends it), for usage lines; ``!`` when not from chat."""
    prefix = event.data.get("prefix")
    if isinstance(prefix, str) and 0 < len(prefix) <= 8 and not any(c.isspace() for c in prefix):
        return prefix
    return DEFAULT_PREFIX


async def route_command(plugin: _Plugin, table: CommandTable | None, event: Event) -> None:
    """Run one command: a declared one after its check (answering the usage when it fails),
    anything else by ``handle_command`` exactly as before."""
    if table is None or not table.commands:
        await plugin.handle_command(event)
        return
    raw = event.data.get("args")
    args = [str(a) for a in raw] if isinstance(raw, list) else []
    found = table.match(args)
    if found is None:
        await plugin.handle_command(event)
        return
    declared, words = found
    prefix = prefix_of(event)
    try:
        checked = declared.check(words)
        if declared.handler is None:
            await plugin.handle_command(event)
            return
        answer = await getattr(plugin, declared.handler)(event, checked)
    except UsageError as exc:
        text = f"usage: {declared.usage_line(table.plugin, prefix)}"
        reason = str(exc)
        await plugin.publish_result(
            {"message": f"{text} ({reason})" if reason else text, "usage": True}, event.correlation_id
        )
        return
    if answer is None:
        return
    data = answer if isinstance(answer, dict) else {"message": str(answer)}
    await plugin.publish_result(data, event.correlation_id)
