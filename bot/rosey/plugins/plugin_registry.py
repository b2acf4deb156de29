"""Plugin registry: which plugins exist, found WITHOUT running any of their code in the core.

Why static: the obvious way, importing every plugin file (``exec_module``) and instantiating
each class to read ``plugin_name``, runs untrusted plugin code with the core's privileges,
before any sandbox exists - the very thing the sandbox is for. This registry only *reads* source: ``ast``
finds the ``PluginInterface`` subclasses and their literal ``plugin_name``; an entry point is
resolved to its source file with path finders, never importing the module or its parent
packages (whose ``__init__`` would run). Plugin classes are imported only in their own sandboxed
process (see ``launcher``).

The price: ``plugin_name`` must be a string literal - a property whose body is
``return "name"`` or a class attribute ``plugin_name = "name"``. Anything else is reported in
``PluginRegistry.problems`` (and logged) instead of being guessed.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.metadata
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot.rosey.core.subjects import validate_plugin_name
from bot.rosey.errors import ConfigError, PluginNotFound

__all__ = [
    "DEFAULT_ENTRY_POINT_GROUP",
    "DEFAULT_PLUGINS_DIR",
    "PluginInfo",
    "PluginRegistry",
    "PluginSource",
    "expr_name",
    "find_plugin_class",
    "locate_plugin_module",
    "parse_source",
    "plugin_class_chain",
    "shown_path",
]

logger = logging.getLogger(__name__)

#: The documented default, relative to the current directory (the repository root).
DEFAULT_PLUGINS_DIR = "bot/rosey/plugins"
#: Distributions register plugins as ``name = package.module:ClassName`` in this group.
DEFAULT_ENTRY_POINT_GROUP = "rosey.plugins"

PluginSource = Literal["directory", "entry_point"]
_SOURCES = ("directory", "entry_point")
_BASE = "PluginInterface"
# How a class states its plugin_name: a literal, something computed, abstract, or not at all.
_NameKind = Literal["literal", "dynamic", "abstract", "missing"]


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What the registry knows about one plugin, all of it read from source or metadata.

    ``class_name`` is the class's NAME, never the class object: holding the object would mean
    importing plugin code into the core. ``file`` is the absolute source path (None when an
    entry point's module has no readable ``.py`` source); ``module`` is the file's stem for
    directory plugins and the dotted module for entry points; ``entry`` is
    ``"package.module:ClassName"`` for entry points and None for files.
    """

    name: str
    class_name: str
    file: Path | None
    module: str | None
    entry: str | None
    source: PluginSource

    def __post_init__(self) -> None:
        validate_plugin_name(self.name)
        if self.source not in _SOURCES:
            raise ValueError(f"invalid plugin source {self.source!r}: use one of {_SOURCES}")

    def as_dict(self) -> dict[str, str | None]:
        """The documented dict (``name``, ``class``, ``file``, ``module``) plus ``entry``, ``source``."""
        return {
            "name": self.name,
            "class": self.class_name,
            "file": None if self.file is None else str(self.file),
            "module": self.module,
            "entry": self.entry,
            "source": self.source,
        }

    def describe(self) -> str:
        """Where the plugin comes from, for messages."""
        if self.source == "entry_point":
            return f"entry point {self.entry} ({self.file or 'no source file'})"
        return f"{self.file} ({self.class_name})"


@dataclass(slots=True)
class _ClassScan:
    is_plugin: bool
    name_kind: _NameKind
    plugin_name: str | None
    has_handler: bool
    subclassed: bool = False


def _tail(expr: ast.expr) -> str | None:
    """``property`` for ``property``, ``functools.cached_property`` -> ``cached_property``."""
    if isinstance(expr, ast.Call):
        expr = expr.func
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


def _literal(expr: ast.expr | None) -> tuple[_NameKind, str | None]:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return "literal", expr.value
    return "dynamic", None


def _own_plugin_name(cls: ast.ClassDef) -> tuple[_NameKind, str | None]:
    """How ``cls``'s own body defines ``plugin_name`` (the last definition wins, as at run time)."""
    found: tuple[_NameKind, str | None] = ("missing", None)
    for stmt in cls.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name == "plugin_name":
            decorators = {_tail(d) for d in stmt.decorator_list}
            if "abstractmethod" in decorators:
                found = ("abstract", None)
                continue
            body = stmt.body
            if len(body) > 1 and isinstance(body[0], ast.Expr) and _literal(body[0].value)[0] == "literal":
                body = body[1:]  # the docstring
            is_property = any(d is not None and d.endswith("property") for d in decorators)
            plain = isinstance(stmt, ast.FunctionDef) and is_property and len(body) == 1
            found = (
                _literal(body[0].value) if plain and isinstance(body[0], ast.Return) else ("dynamic", None)
            )
        elif isinstance(stmt, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == "plugin_name" for t in stmt.targets):
                found = _literal(stmt.value)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if stmt.target.id == "plugin_name" and stmt.value is not None:
                found = _literal(stmt.value)
    return found


def _scan_classes(tree: ast.Module) -> dict[str, _ClassScan]:
    """Every top-level class of a module, whether it is a plugin class, and its plugin_name.

    A plugin class lists ``PluginInterface`` (any alias, or ``x.PluginInterface``) among its
    bases, or a plugin class defined earlier in the same module. ``plugin_name`` and
    ``handle_command`` are inherited from same-module bases, first base first.
    """
    aliases = {_BASE}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            aliases.update(a.asname for a in node.names if a.name == _BASE and a.asname)
    scans: dict[str, _ClassScan] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        local = [scans[b.id] for b in node.bases if isinstance(b, ast.Name) and b.id in scans]
        direct = any(
            (isinstance(b, ast.Name) and b.id in aliases)
            or (isinstance(b, ast.Attribute) and b.attr == _BASE)
            for b in node.bases
        )
        kind, value = _own_plugin_name(node)
        for base in local:
            if kind != "missing":
                break
            kind, value = base.name_kind, base.plugin_name
        handler = any(
            isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) and s.name == "handle_command"
            for s in node.body
        )
        for base in local:
            base.subclassed = True
        scans[node.name] = _ClassScan(
            is_plugin=direct or any(b.is_plugin for b in local),
            name_kind=kind,
            plugin_name=value,
            has_handler=handler or any(b.has_handler for b in local),
        )
    return scans


# --- public AST helpers, for the other static readers of plugin source (declared_commands, ...)


def expr_name(expr: ast.expr) -> str | None:
    """The last name of a decorator or call: ``command`` for ``@command(...)`` and ``@x.command``."""
    return _tail(expr)


def parse_source(path: Path) -> ast.Module:
    """``path`` parsed, its SyntaxWarnings silenced (the author's business); raises SyntaxError,
    OSError, ValueError, RecursionError or MemoryError. Nothing is run."""
    source = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(source, filename=str(path))


def find_plugin_class(tree: ast.Module, plugin: str, class_name: str | None = None) -> ast.ClassDef | None:
    """The class node of plugin ``plugin`` in ``tree`` (see :func:`plugin_class_chain`, whose
    first element it is). None when reading cannot tell."""
    chain = plugin_class_chain(tree, plugin_name=plugin, class_name=class_name)
    return chain[0] if chain else None


def _run_plugin_target(tree: ast.Module) -> str | None:
    """The class a module-level ``run_plugin(Name)`` call starts (inside ``if __name__ ==
    "__main__":`` as the docs write it, or bare): at run time that class is the plugin."""
    for stmt in tree.body:
        body = stmt.body if isinstance(stmt, ast.If) else [stmt]
        for inner in body:
            call = inner.value if isinstance(inner, ast.Expr) else None
            if (
                isinstance(call, ast.Call)
                and _tail(call.func) == "run_plugin"
                and call.args
                and isinstance(call.args[0], ast.Name)
            ):
                return call.args[0].id
    return None


def shown_path(path: Path) -> str:
    """A path as the operator would type it, for messages (relative to the current directory)."""
    return _shown(path)


# --- end of the public AST helpers


def plugin_class_chain(
    tree: ast.Module, *, plugin_name: str | None = None, class_name: str | None = None
) -> list[ast.ClassDef]:
    """The plugin class of ``tree`` and its same-module bases, in attribute lookup order.

    The class is ``class_name`` when given (an entry point names it), else the one the module's
    ``run_plugin(...)`` call starts (what runs), else the plugin class whose literal ``plugin_name``
    is ``plugin_name`` (the last such definition), else the module's only plugin class that nothing
    subclasses. [] when there is no such class. Every static reader of plugin source (declared
    commands, declared requests) picks its class here, so they never disagree. Bases from other
    modules cannot be read and are left out; bases are searched first base first, depth first,
    as ``plugin_name`` is.
    """
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    scans = _scan_classes(tree)
    chosen = class_name if class_name in classes else None
    if chosen is None and class_name is None:
        plugins = [n for n, scan in scans.items() if scan.is_plugin and not scan.subclassed]
        named = [n for n in plugins if plugin_name is not None and scans[n].plugin_name == plugin_name]
        started = _run_plugin_target(tree)
        if started in scans and scans[started].is_plugin:
            chosen = started
        elif named:
            chosen = named[-1]  # a later definition of the same plugin replaces an earlier one
        elif len(plugins) == 1:
            chosen = plugins[0]
    chain: list[ast.ClassDef] = []

    def visit(name: str) -> None:
        node = classes.get(name)
        if node is None or node in chain:
            return
        chain.append(node)
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in classes and classes[base.id].lineno < node.lineno:
                visit(base.id)

    if chosen is not None:
        visit(chosen)
    return chain


def _find_top_level(name: str) -> importlib.machinery.ModuleSpec | None:
    """Where top-level module ``name`` lives: ``sys.path`` first, then the other meta path finders
    (editable installs map their packages with one). Finding a top-level name imports nothing."""
    spec = importlib.machinery.PathFinder.find_spec(name)
    if spec is not None:
        return spec
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if finder is importlib.machinery.PathFinder or not callable(find_spec):
            continue
        try:
            found = find_spec(name, None)
        except Exception as exc:  # a third-party finder; it must not stop discovery
            logger.debug("meta path finder %r failed on %s: %s", finder, name, exc)
            continue
        if isinstance(found, importlib.machinery.ModuleSpec):
            return found
    return None


def _find_module(dotted: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of ``dotted`` found component by component, WITHOUT importing parent packages.

    ``importlib.util.find_spec("a.b")`` imports ``a`` (running ``a/__init__.py``); here each
    step searches the previous package's ``submodule_search_locations`` instead.
    """
    parts = dotted.split(".")
    spec = _find_top_level(parts[0])
    for i in range(1, len(parts)):
        if spec is None or spec.submodule_search_locations is None:
            return None  # missing, or a plain module where a package was needed
        locations = list(spec.submodule_search_locations)
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), locations)
    return spec


def _source_file(spec: importlib.machinery.ModuleSpec) -> Path | None:
    origin = spec.origin
    if spec.has_location and origin and origin.endswith(".py") and os.path.isfile(origin):
        return Path(origin).absolute()
    return None  # extension module, bytecode only, inside a zip, namespace package...


def _shown(path: Path) -> str:
    """A path as the operator would type it: relative to the current directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _calls_run_plugin(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.Call) and _tail(node.func) == "run_plugin" for node in ast.walk(tree))


def inspect_plugin_file(path: Path, expected_name: str) -> str | None:
    """Why the plugin file ``path`` cannot run as plugin ``expected_name``, or None if it can.

    Read statically, like discovery: a syntax error (with its line), no plugin class, several
    plugin classes and no ``run_plugin(...)`` to pick one, or a ``plugin_name`` that differs
    from ``expected_name`` (the name in rosey.toml). Nothing is imported.
    """
    shown = _shown(path)
    try:
        tree = parse_source(path)
    except SyntaxError as exc:
        return f"{shown}:{exc.lineno}: SyntaxError: {exc.msg}"
    except (OSError, ValueError, RecursionError, MemoryError) as exc:
        return f"{shown}: cannot read: {exc}"
    scans = _scan_classes(tree)
    plugins = {
        name: scan
        for name, scan in scans.items()
        if scan.is_plugin and not scan.subclassed and scan.name_kind not in ("missing", "abstract")
    }
    calls_run_plugin = _calls_run_plugin(tree)
    # Only what reading can prove: a class whose plugin base comes from another module is not
    # recognised here, but the launcher may well run it; such files are given the benefit.
    if not scans and not calls_run_plugin:
        return f"{shown}: defines no plugin class (a PluginInterface subclass with a plugin_name)"
    if len(plugins) > 1 and not calls_run_plugin:
        names = ", ".join(plugins)
        return (
            f"{shown}: defines {len(plugins)} plugin classes ({names}) and no run_plugin(...) to choose one"
        )
    declared = {scan.plugin_name for scan in plugins.values() if scan.name_kind == "literal"}
    if len(plugins) == 1 and declared and expected_name not in declared:
        return (
            f"{shown}: its plugin_name is {declared.pop()!r} but rosey.toml calls it "
            f"{expected_name!r}; make them match"
        )
    return None


def locate_plugin_module(module: str, class_name: str | None = None) -> tuple[str, Path | None]:
    """Find plugin class ``class_name`` (or the module's only plugin class) by reading source.

    Returns ``(class_name, source_file)``; raises :class:`PluginNotFound` (a LookupError) saying
    what is wrong. Nothing is imported: this is how ``module = "pkg.mod"`` in rosey.toml becomes
    ``pkg.mod:Class``.
    """
    spec = _find_module(module)
    if spec is None:
        raise PluginNotFound(f"module {module!r} not found on sys.path")
    path = _source_file(spec)
    if path is None:
        if class_name is None:
            raise PluginNotFound(
                f"module {module!r} has no Python source to read; name the class as 'module:Class'"
            )
        return class_name, None
    tree = ast.parse(path.read_bytes(), filename=str(path))
    plugins = [name for name, scan in _scan_classes(tree).items() if scan.is_plugin and not scan.subclassed]
    if class_name is not None:
        return class_name, path
    if len(plugins) != 1:
        found = ", ".join(plugins) or "none"
        raise PluginNotFound(
            f"module {module!r} defines {len(plugins)} plugin classes ({found}); name one as 'module:Class'"
        )
    return plugins[0], path


class PluginRegistry:
    """
    Registry of available plugins

    Discovers plugins in ``plugins_dir`` (default ``bot/rosey/plugins``, relative to the current
    directory), in each of ``plugin_dirs``, then in the entry points of ``entry_point_group``
    (None disables them), all by static analysis - no plugin code runs in this process.

    ``plugins`` maps each name to the documented dict (``name``, ``class``, ``file``, ``module``,
    plus ``entry`` and ``source``), where ``"class"`` is the class NAME as a str, not the class
    object; ``infos`` holds the same as :class:`PluginInfo`. Files and directories whose name
    starts with ``_`` or ``.`` are skipped; under the default directory so is ``examples/``
    unless ``include_examples``. When two plugins claim a name the first found is kept.
    Whatever could not be registered is described in ``problems`` (and logged as a warning).
    """

    def __init__(
        self,
        plugins_dir: str | os.PathLike[str] | None = None,
        *,
        plugin_dirs: Sequence[Path | str] = (),
        entry_point_group: str | None = DEFAULT_ENTRY_POINT_GROUP,
        include_examples: bool = False,
        search_default_dir: bool = True,
    ) -> None:
        """
        Args:
            plugins_dir: Directory containing plugins (default: ``bot/rosey/plugins``)
            plugin_dirs: More directories to search, after ``plugins_dir``
            entry_point_group: Entry point group to search last; None to ignore entry points
            include_examples: Also search ``examples/`` under the default directory
            search_default_dir: False skips the default directory when ``plugins_dir`` is not given
        """
        if entry_point_group is not None and not entry_point_group.strip():
            raise ConfigError("entry_point_group must be a non-empty group name, or None to disable")
        self._default_dir = not plugins_dir
        self.plugins_dir = Path(plugins_dir or DEFAULT_PLUGINS_DIR)
        self.plugin_dirs = tuple(Path(d) for d in plugin_dirs)
        self.entry_point_group = entry_point_group
        self.include_examples = include_examples
        self.search_default_dir = search_default_dir
        self.plugins: dict[str, dict[str, str | None]] = {}
        self.infos: dict[str, PluginInfo] = {}
        self.problems: list[str] = []
        #: Plugin files found but unusable, by the name they would have had (their file's stem):
        #: the file and the reason, with file and line. ``rosey run`` reports them as failed plugins.
        self.load_failures: dict[str, tuple[Path, str]] = {}

    def discover(self) -> None:
        """Discover plugins (afresh): directories first, then entry points; nothing is imported."""
        self.plugins.clear()
        self.infos.clear()
        self.problems.clear()
        self.load_failures.clear()
        if self.search_default_dir or not self._default_dir:
            skip_examples = self._default_dir and not self.include_examples
            self._discover_dir(self.plugins_dir, skip_examples=skip_examples, required=not self._default_dir)
        for directory in self.plugin_dirs:
            self._discover_dir(directory, skip_examples=False, required=True)
        if self.entry_point_group is not None:
            self._discover_entry_points(self.entry_point_group)
        logger.info("Discovered %d plugin(s): %s", len(self.infos), ", ".join(self.infos) or "none")

    def get_plugin(self, name: str) -> dict[str, str | None] | None:
        """Get plugin info by name (the documented dict shape), or None"""
        return self.plugins.get(name)

    def get_info(self, name: str) -> PluginInfo | None:
        """Get plugin info by name, or None"""
        return self.infos.get(name)

    def require(self, name: str) -> PluginInfo:
        """Get plugin info by name; raise :class:`PluginNotFound` if there is no such plugin."""
        info = self.infos.get(name)
        if info is None:
            known = ", ".join(sorted(self.infos)) or "none discovered"
            raise PluginNotFound(f"no plugin named {name!r} (known: {known})", plugin=name)
        return info

    def list_plugins(self) -> list[str]:
        """List all plugin names"""
        return list(self.plugins.keys())

    def _problem(self, fmt: str, *args: object) -> None:
        self.problems.append(fmt % args)
        logger.warning(fmt, *args)

    def _add(self, info: PluginInfo) -> None:
        kept = self.infos.get(info.name)
        if kept is not None:
            message = "duplicate plugin name %r: %s is kept, %s is ignored"
            self._problem(message, info.name, kept.describe(), info.describe())
            return
        self.infos[info.name] = info
        self.plugins[info.name] = info.as_dict()
        logger.info("Discovered plugin %s: %s", info.name, info.describe())

    def _parse(self, path: Path) -> ast.Module | None:
        try:
            return parse_source(path)
        except SyntaxError as exc:
            self._problem("cannot parse %s: %s (line %s)", path, exc.msg, exc.lineno)
            self._failed(path, f"{_shown(path)}:{exc.lineno}: SyntaxError: {exc.msg}")
        except (OSError, ValueError, RecursionError, MemoryError) as exc:
            self._problem("cannot read %s: %s", path, exc)
            self._failed(path, f"{_shown(path)}: cannot read: {exc}")
        return None

    def _failed(self, path: Path, reason: str) -> None:
        """Remember an unusable plugin file under the name it would most likely have had."""
        # A package plugin's main module (`rosey new`'s plugins/NAME/plugin.py) goes by its directory.
        stem = path.parent.name if path.name == "plugin.py" else path.stem
        try:
            name = validate_plugin_name(stem)
        except ValueError:
            return  # no plausible plugin name: the problem list says it
        self.load_failures.setdefault(name, (path, reason))

    def _walk(self, root: Path, *, skip_examples: bool) -> Iterator[Path]:
        def unreadable(exc: OSError) -> None:
            self._problem("cannot list %s: %s", exc.filename, exc.strerror or exc)

        for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(("_", ".")) and not (skip_examples and d == "examples")
            )
            for filename in sorted(filenames):
                if filename.endswith(".py") and not filename.startswith(("_", ".")):
                    yield Path(dirpath, filename).absolute()

    def _discover_dir(self, root: Path, *, skip_examples: bool, required: bool) -> None:
        if not root.is_dir():
            if required:
                self._problem("plugins directory not found: %s", root)
            else:
                logger.info("Default plugins directory not found: %s (cwd %s)", root, Path.cwd())
            return
        logger.debug("Discovering plugins in %s", root)
        for path in self._walk(root, skip_examples=skip_examples):
            tree = self._parse(path)
            if tree is None:
                continue
            for class_name, scan in _scan_classes(tree).items():
                if scan.is_plugin:
                    self._discover_class(path, class_name, scan)

    def _discover_class(self, path: Path, class_name: str, scan: _ClassScan) -> None:
        if scan.name_kind == "dynamic":
            self._not_literal(class_name, path, "")
        elif scan.name_kind in ("missing", "abstract"):
            if scan.has_handler and not scan.subclassed:
                self._problem("%s in %s defines handle_command but no plugin_name", class_name, path)
            else:
                logger.debug("Skipping abstract plugin class %s in %s", class_name, path)
        elif (name := self._valid_name(scan.plugin_name or "", f"{class_name} in {path}")) is not None:
            self._add(PluginInfo(name, class_name, path, path.stem, None, "directory"))

    def _not_literal(self, class_name: str, path: Path | None, note: str) -> None:
        fmt = "cannot determine plugin_name of %s in %s statically; make it return a string literal%s"
        self._problem(fmt, class_name, path, note)

    def _valid_name(self, name: str, where: str) -> str | None:
        try:
            return validate_plugin_name(name)
        except ValueError as exc:
            self._problem("%s: %s", where, exc)
            return None

    def _discover_entry_points(self, group: str) -> None:
        importlib.invalidate_caches()  # see distributions and modules installed since the last look
        try:
            entry_points = importlib.metadata.entry_points(group=group)
        except Exception as exc:  # broken metadata of any installed distribution must not stop discovery
            self._problem("cannot read entry points of group %r: %s", group, exc)
            return
        for ep in entry_points:
            self._discover_entry_point(ep)

    def _discover_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        where = f"entry point {ep.name} = {ep.value} ({dist})"
        module, attr = ep.module, ep.attr
        if not module or not attr or not attr.isidentifier():
            self._problem("%s: the value must look like 'package.module:ClassName'", where)
            return
        try:
            spec = _find_module(module)
        except (ImportError, ValueError, OSError) as exc:
            self._problem("%s: cannot locate module %s: %s", where, module, exc)
            return
        if spec is None:
            self._problem("%s: module %s not found on sys.path", where, module)
            return
        path = _source_file(spec)
        tree = self._parse(path) if path is not None else None
        scan = _scan_classes(tree).get(attr) if tree is not None else None
        static: str | None = None
        if scan is None:
            logger.debug(
                "%s: class %s not in the source of %s; using the entry point name", where, attr, module
            )
        elif scan.name_kind == "literal":
            static = self._valid_name(scan.plugin_name or "", where)
            if static is None:
                return
        elif scan.name_kind == "dynamic":
            self._not_literal(attr, path, f" (assuming the entry point name {ep.name!r})")
        if static is not None and static != ep.name:
            fmt = "%s: the entry point is named %r but %s.plugin_name is %r; using %r, as its subjects do"
            self._problem(fmt, where, ep.name, attr, static, static)
        name = static or self._valid_name(ep.name, where)
        if name is not None:
            self._add(PluginInfo(name, attr, path, module, f"{module}:{attr}", "entry_point"))
