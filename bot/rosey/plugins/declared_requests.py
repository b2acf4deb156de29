"""A plugin's declared requests (``requests = Requests(...)``), read from its source, never run.

The host must know what a plugin asks for before and without running it (``rosey plugins
review`` works with no bot running; the check at each start happens before the plugin's code
runs, and importing it in the core would run untrusted code unsandboxed). So, like
``plugin_name`` in the registry, the declaration is read with ``ast``: the calls
``Requests(...)``, ``Http(...)``, ``Storage(...)``, ``Files(...)`` (any import alias, or
``module.Requests``) with literal arguments: strings, whole numbers, ``None``, and lists or tuples
of them. Anything else (a name, an f-string, arithmetic, a comprehension, a call to anything
else) is not evaluated: it is reported as a problem naming the line, and that part of the
declaration is left out. Sizes are bounded (strings, list lengths, nodes), so a hostile file
costs the reader little and can claim nothing it did not write out.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bot.rosey.config import env_name_problem, subject_problem
from bot.rosey.errors import GatewayRefused
from bot.rosey.gateway_config import METHODS, Target, parse_target
from bot.rosey.plugins.plugin_registry import parse_source, plugin_class_chain

__all__ = [
    "ATTRIBUTE",
    "Declaration",
    "DeclaredRequests",
    "HttpRequest",
    "read_declared_requests",
]

#: The class attribute holding the declaration.
ATTRIBUTE = "requests"
MAX_STRING = 4096
MAX_ITEMS = 256
MAX_NODES = 20_000

_LIMIT_KEYS = {
    "Storage": ("max_bytes", "max_value_bytes", "max_keys"),
    "Files": ("max_bytes", "max_pending", "expire_seconds"),
}
_LIST_FIELDS = ("read_paths", "write_paths", "network", "events", "publish", "env")
_REQUESTS_FIELDS = (*_LIST_FIELDS, "http", "storage", "files", "max_processes")
_CALLS = ("Requests", "Http", "Storage", "Files")


@dataclass(frozen=True, kw_only=True)
class HttpRequest:
    """One ``Http(...)``: a URL prefix in canonical form, the methods, and why."""

    url: str  # as written
    target: Target
    methods: tuple[str, ...] = ("GET",)
    reason: str = ""

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{'/'.join(self.methods)} {self.target.url()}{why}"


@dataclass(frozen=True, kw_only=True)
class DeclaredRequests:
    """What a plugin's source asks for (each field as in :class:`~bot.rosey.plugins.permissions.Requests`)."""

    read_paths: tuple[Path, ...] = ()
    write_paths: tuple[Path, ...] = ()
    network: tuple[str, ...] = ()
    http: tuple[HttpRequest, ...] = ()
    storage: Mapping[str, int] = field(default_factory=dict)
    files: Mapping[str, int] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    max_processes: int = 0


@dataclass(frozen=True, kw_only=True)
class Declaration:
    """The outcome of reading one plugin file: its requests (None when it declares none or the
    declaration could not be read at all), where, and what could not be read."""

    file: Path | None
    requests: DeclaredRequests | None = None
    line: int | None = None
    problems: tuple[str, ...] = ()


def _not_literal(node: ast.AST, what: str) -> ValueError:
    """Why a part of the declaration cannot be read; ``args`` are (line or None, what). A plain
    ValueError: it never leaves this module (read_declared_requests turns it into a problem)."""
    return ValueError(getattr(node, "lineno", None), what)


@dataclass(frozen=True)
class _Call:
    name: str  # Requests, Http, Storage or Files
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    line: int


class _Literal:
    """Turns the AST of a declaration into plain values, without evaluating anything."""

    def __init__(self, aliases: Mapping[str, str]) -> None:
        self._aliases = aliases
        self._nodes = 0

    def value(self, node: ast.expr) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _not_literal(node, f"the declaration is too large (more than {MAX_NODES} parts)")
        if isinstance(node, ast.Constant):
            value = node.value
            if value is None or (isinstance(value, int) and not isinstance(value, bool)):
                return value
            if isinstance(value, str):
                if len(value) > MAX_STRING:
                    raise _not_literal(node, f"a string longer than {MAX_STRING} characters")
                return value
            raise _not_literal(node, f"{type(value).__name__} values are not accepted here ({value!r:.40})")
        if isinstance(node, ast.List | ast.Tuple):
            if len(node.elts) > MAX_ITEMS:
                raise _not_literal(node, f"a list of more than {MAX_ITEMS} items")
            return [self.value(item) for item in node.elts]
        if isinstance(node, ast.Call):
            return self.call(node)
        raise _not_literal(node, f"{_what(node)} is not a literal; write the value out")

    def call(self, node: ast.Call) -> _Call:
        func = node.func
        name = None
        if isinstance(func, ast.Name):
            name = self._aliases.get(func.id)
        elif isinstance(func, ast.Attribute) and func.attr in _CALLS:
            name = func.attr
        if name is None:
            raise _not_literal(node, f"a call to {_what(func)}; only {', '.join(_CALLS)}(...) are read")
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise _not_literal(node, f"{name}(...) with *args or **kwargs cannot be read")
        args = tuple(self.value(a) for a in node.args)
        kwargs = {str(k.arg): self.value(k.value) for k in node.keywords}
        return _Call(name, args, kwargs, node.lineno)


def _what(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Attribute):
        return f"the attribute {node.attr!r}"
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    return f"an expression ({type(node).__name__})"


def _aliases(tree: ast.Module) -> dict[str, str]:
    aliases = {name: name for name in _CALLS}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in _CALLS and alias.asname:
                    aliases[alias.asname] = alias.name
    return aliases


def _assignment(chain: list[ast.ClassDef]) -> ast.expr | None:
    """The value of the last ``requests = ...`` in the first class of ``chain`` that has one."""
    for cls in chain:
        found: ast.expr | None = None
        for stmt in cls.body:
            if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == ATTRIBUTE for t in stmt.targets
            ):
                found = stmt.value
            elif (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and stmt.target.id == ATTRIBUTE
                and stmt.value is not None
            ):
                found = stmt.value
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------ checking what was written


class _Checker:
    def __init__(self, line: int) -> None:
        self.line = line
        self.problems: list[str] = []

    def problem(self, key: str, reason: str, line: int | None = None) -> None:
        self.problems.append(f"line {line or self.line}: {key}: {reason}")

    def strings(self, key: str, value: Any) -> list[str]:
        if not isinstance(value, list):
            self.problem(key, f"must be a list of strings, got {_shown(value)}")
            return []
        good = []
        for index, item in enumerate(value):
            if isinstance(item, str) and item and "\x00" not in item:
                good.append(item)
            else:
                self.problem(f"{key}[{index}]", f"must be a non-empty string, got {_shown(item)}")
        return good

    def checked(self, key: str, items: list[str], check: Any) -> list[str]:
        good = []
        for index, item in enumerate(items):
            reason = check(item)
            if reason:
                self.problem(f"{key}[{index}]", f"{reason}, got {item!r:.80}")
            else:
                good.append(item)
        return good

    def limits(self, key: str, value: Any, kind: str) -> dict[str, int]:
        if value is None:
            return {}
        if not isinstance(value, _Call) or value.name != kind:
            self.problem(key, f"must be {kind}(...), got {_shown(value)}")
            return {}
        if value.args:
            self.problem(key, f"{kind}(...) takes keyword arguments only", value.line)
        limits = {}
        for name, number in value.kwargs.items():
            if name not in _LIMIT_KEYS[kind]:
                self.problem(f"{key}.{name}", f"unknown; known: {', '.join(_LIMIT_KEYS[kind])}", value.line)
            elif number is None:
                continue
            elif not isinstance(number, int) or number < 1:
                self.problem(
                    f"{key}.{name}", f"must be a positive whole number, got {_shown(number)}", value.line
                )
            else:
                limits[name] = number
        return limits

    def http(self, value: Any) -> list[HttpRequest]:
        if not isinstance(value, list):
            self.problem("http", f"must be a list of Http(...), got {_shown(value)}")
            return []
        found = []
        for index, item in enumerate(value):
            key = f"http[{index}]"
            if not isinstance(item, _Call) or item.name != "Http":
                self.problem(key, f"must be Http(...), got {_shown(item)}")
                continue
            parsed = self._http(key, item)
            if parsed is not None:
                found.append(parsed)
        return found

    def _http(self, key: str, call: _Call) -> HttpRequest | None:
        kwargs = dict(call.kwargs)
        if len(call.args) > 1 or (call.args and "url" in kwargs):
            self.problem(key, "Http takes one URL", call.line)
            return None
        url = call.args[0] if call.args else kwargs.pop("url", None)
        kwargs.pop("url", None)
        reason = kwargs.pop("reason", "")
        methods = kwargs.pop("methods", ["GET"])
        for unknown in kwargs:
            self.problem(f"{key}.{unknown}", "unknown; known: url, reason, methods", call.line)
        if not isinstance(url, str) or not url:
            self.problem(f"{key}.url", f"must be a URL or a host name, got {_shown(url)}", call.line)
            return None
        if not isinstance(reason, str):
            self.problem(f"{key}.reason", f"must be a string, got {_shown(reason)}", call.line)
            reason = ""
        if (
            not isinstance(methods, list)
            or not methods
            or not all(isinstance(m, str) and m.upper() in METHODS for m in methods)
        ):
            self.problem(f"{key}.methods", f"must be a list of {', '.join(METHODS)}", call.line)
            return None
        try:
            target = parse_target(url if "://" in url else f"https://{url}/")
        except GatewayRefused as exc:
            self.problem(f"{key}.url", str(exc), call.line)
            return None
        if target.query:
            self.problem(f"{key}.url", "a URL prefix has no query", call.line)
            return None
        return HttpRequest(
            url=url,
            target=target,
            methods=tuple(dict.fromkeys(m.upper() for m in methods)),
            reason=" ".join(reason.split()),
        )


def _absolute(path: str) -> str | None:
    return None if PurePosixPath(path).is_absolute() else "must be an absolute path"


def _host_port(entry: str) -> str | None:
    host, sep, port = entry.rpartition(":")
    if not sep or not host or any(c.isspace() for c in host):
        return "must be 'host:port'"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return "must be 'host:port' with a port in 1..65535"
    return None


def _shown(value: Any) -> str:
    if isinstance(value, _Call):
        return f"{value.name}(...)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(call: _Call) -> tuple[DeclaredRequests, list[str]]:
    checker = _Checker(call.line)
    if call.args:
        checker.problem("Requests", "takes keyword arguments only")
    values: dict[str, Any] = {}
    for name, value in call.kwargs.items():
        if name not in _REQUESTS_FIELDS:
            checker.problem(name, f"unknown; known: {', '.join(_REQUESTS_FIELDS)}")
            continue
        if name in _LIST_FIELDS:
            items = checker.strings(name, value)
            if name in ("read_paths", "write_paths"):
                values[name] = tuple(
                    Path(os.path.normpath(p)) for p in checker.checked(name, items, _absolute)
                )
            else:
                check = {"network": _host_port, "env": env_name_problem}.get(name, subject_problem)
                values[name] = tuple(dict.fromkeys(checker.checked(name, items, check)))
        elif name == "http":
            values[name] = tuple(checker.http(value))
        elif name in ("storage", "files"):
            values[name] = checker.limits(name, value, name.capitalize())
        elif isinstance(value, int) and value >= 0:  # max_processes
            values[name] = value
        else:
            checker.problem(name, f"must be a whole number >= 0, got {_shown(value)}")
    return DeclaredRequests(**values), checker.problems


def read_declared_requests(
    path: Path, *, plugin_name: str | None = None, class_name: str | None = None
) -> Declaration:
    """The requests declared by the plugin class in ``path`` (see :func:`plugin_class_chain`).

    Read at every start of a plugin, so the answer for an unchanged file is remembered, and a
    file that does not contain the word ``requests`` at all is not parsed.
    """
    try:
        stat = path.stat()
    except OSError as exc:
        return Declaration(file=path, problems=(f"cannot read: {exc}",))
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, plugin_name, class_name)
    remembered = _REMEMBERED.get(key)
    if remembered is None:
        remembered = _read(path, plugin_name=plugin_name, class_name=class_name)
        if len(_REMEMBERED) >= _REMEMBER:
            _REMEMBERED.pop(next(iter(_REMEMBERED)))
        _REMEMBERED[key] = remembered
    return remembered


_REMEMBER = 256
_REMEMBERED: dict[tuple[object, ...], Declaration] = {}


def _read(path: Path, *, plugin_name: str | None, class_name: str | None) -> Declaration:
    try:
        if ATTRIBUTE.encode() not in path.read_bytes():
            return Declaration(file=path)  # nothing can be declared: no need to parse
        tree = parse_source(path)
    except SyntaxError as exc:
        return Declaration(file=path, problems=(f"line {exc.lineno}: SyntaxError: {exc.msg}",))
    except (OSError, ValueError, RecursionError, MemoryError) as exc:
        return Declaration(file=path, problems=(f"cannot read: {exc}",))
    chain = plugin_class_chain(tree, plugin_name=plugin_name, class_name=class_name)
    node = _assignment(chain)
    if node is None:
        return Declaration(file=path)
    try:
        value = _Literal(_aliases(tree)).value(node)
    except ValueError as exc:
        line, what = exc.args if len(exc.args) == 2 else (None, str(exc))
        where = f"line {line}: " if line else ""
        return Declaration(
            file=path,
            line=node.lineno,
            problems=(f"{where}{ATTRIBUTE} cannot be read without running the plugin: {what}",),
        )
    except RecursionError:
        return Declaration(file=path, line=node.lineno, problems=(f"line {node.lineno}: nested too deeply",))
    if value is None:
        return Declaration(file=path, line=node.lineno)
    if not isinstance(value, _Call) or value.name != "Requests":
        return Declaration(
            file=path,
            line=node.lineno,
            problems=(f"line {node.lineno}: {ATTRIBUTE} must be Requests(...), got {_shown(value)}",),
        )
    requests, problems = _check(value)
    return Declaration(file=path, requests=requests, line=node.lineno, problems=tuple(problems))
