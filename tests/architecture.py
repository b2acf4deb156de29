"""The rules of the house, read from the source: which package may import which.

Every ``import`` in ``bot/rosey`` counts, wherever it stands: at module level, inside a function
(a lazy import still couples the two modules) and under ``if TYPE_CHECKING:`` (a type-only cycle
is still a design cycle). The rules:

* ``core/`` is the wire, imported by every plugin process: it imports nothing of Rosey but
  ``errors`` and itself.
* The plugin-process side (the SDK, the launcher, the zygote's child side, the contract, the
  sandbox it applies to itself) never imports host code: supervision, services, broker,
  adapters, config, catalog, grants, runtime, app, cli, testing, nor the host-side process
  primitives, runner and registry.
* ``supervision/`` never imports services, broker, config, app or cli: it supervises processes
  it is handed and knows nothing of how they were configured or what runs beside it.
* Only ``cli/`` imports ``app``, the composition root.
* No import cycles between modules.

:func:`violations` returns every broken rule as one line; the test asserts there are none, and
that a forbidden import planted in a copy of the tree is found.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT_PACKAGE = "bot.rosey"

#: Modules that run inside plugin processes (prefixes, relative to bot.rosey).
PLUGIN_PROCESS_SIDE = (
    "core",
    "errors",
    "linux",
    "plugins.plugin_interface",
    "plugins.http_client",
    "plugins.launcher",
    "plugins.zygote_child",
    "plugins.contract",
    "plugins.command_stats",
    "plugins.storage_client",
    "plugins.files_client",
    "plugins.permissions",  # the SDK's Requests(...) declaration
    "plugins.sandbox",
    "plugins.tracebacks",
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
#: What the plugin-process side must never import.
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
)


@dataclass(frozen=True)
class Import:
    source: str  # importing module, relative to bot.rosey ("services.control")
    target: str  # imported module, relative to bot.rosey ("app")
    line: int


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "__init__"


def _resolve(base: str, node: ast.ImportFrom, is_package: bool) -> str | None:
    """The absolute module an ``ImportFrom`` names (relative imports resolved), or None."""
    if node.level == 0:
        return node.module
    package = base.split(".") if is_package else base.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def imports(package_dir: Path) -> Iterator[Import]:
    """Every import of a Rosey module by a Rosey module under ``package_dir`` (bot/rosey)."""
    modules = {
        _module_name(path, package_dir)
        for path in package_dir.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    prefix = ROOT_PACKAGE + "."
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        source = _module_name(path, package_dir)
        absolute = f"{ROOT_PACKAGE}.{source}" if source != "__init__" else ROOT_PACKAGE
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = _resolve(absolute, node, path.name == "__init__.py")
                if module is None:
                    continue
                # ``from bot.rosey.plugins import plugin_interface`` imports a module, not a name.
                names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            for name in names:
                if not name.startswith(prefix):
                    continue
                target = name[len(prefix) :]
                if target not in modules:
                    if isinstance(node, ast.ImportFrom) and name != names[0]:
                        continue  # a name inside a module, not a submodule
                    while target and target not in modules:
                        target = target.rpartition(".")[0]
                if target and target != source:
                    yield Import(source, target, node.lineno)


def _rule_breaks(edge: Import) -> str | None:
    source, target = edge.source, edge.target
    if _within(source, "core") and not (_within(target, "core") or target == "errors"):
        return "core/ imports nothing of Rosey but errors"
    if any(_within(source, side) for side in PLUGIN_PROCESS_SIDE) and any(
        _within(target, host) for host in HOST_ONLY
    ):
        return "the plugin-process side never imports host code"
    if _within(source, "supervision") and any(
        _within(target, p) for p in ("services", "broker", "config", "app", "cli")
    ):
        return "supervision never imports services, broker, config, app or cli"
    if target == "app" and not _within(source, "cli"):
        return "only cli/ imports app"
    return None


def _cycles(edges: list[Import]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def _is_package_init_edge(edge: Import, package_dir: Path) -> bool:
    """A package's ``__init__`` importing its own submodules (and them importing a sibling
    through the package) is how Python packages re-export; it is not a cycle between concepts."""
    return _within(edge.target, edge.source) and (package_dir / edge.source.replace(".", "/")).is_dir()


def violations(package_dir: Path) -> list[str]:
    """Every broken rule in the tree at ``package_dir`` (a ``bot/rosey`` directory), one line each."""
    edges = list(imports(package_dir))
    problems = [
        f"{edge.source} (line {edge.line}) imports {edge.target}: {reason}"
        for edge in edges
        if (reason := _rule_breaks(edge)) is not None
    ]
    graph_edges = [edge for edge in edges if not _is_package_init_edge(edge, package_dir)]
    problems += ["import cycle: " + " -> ".join(cycle) for cycle in _cycles(graph_edges)]
    return problems
