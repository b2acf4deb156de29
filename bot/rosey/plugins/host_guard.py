"""The import guard of a plugin process: plugin code that imports Rosey's host code is told why, and refused.

Rosey's host modules (the app, the router and the other services, the supervisor, the broker,
the config, the CLI) do not run in a plugin process: a plugin talks to them over NATS. Imported
there anyway, they would at best mislead (a second, empty router; a config the plugin cannot
read under the sandbox). So the launcher installs :class:`HostModuleGuard` on ``sys.meta_path``
before any plugin code runs, under both launchers. When plugin code imports a module of
``bot.rosey`` outside the plugin-process side (:mod:`bot.rosey.plugins.plugin_side`, the list
the house rules use too), the guard writes one hint naming the importing file and line and what
to use instead (:mod:`bot.rosey.plugins.hints`), once per place, and raises
:class:`~bot.rosey.errors.HostModuleRefused` (an ``ImportError``). Uncaught at the top of a
plugin file, the plugin fails to start with that line as its reason.

Rosey's own imports are never refused: an import made by a module of the ``bot.rosey`` package
(the SDK's lazy imports, an adapter package's ``__init__``) is Rosey's business, held to the house
rules by ``tests/test_architecture.py``. Nor is anything outside ``bot.rosey``: the standard
library and third-party packages import as always, at the cost of one ``str.startswith`` each.

This is a teacher, not a wall: plugin code can remove it. What a plugin may reach is the
sandbox's and the NATS server's business.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from bot.rosey.errors import HostModuleRefused
from bot.rosey.plugins import hints
from bot.rosey.plugins.contract import Env
from bot.rosey.plugins.plugin_side import ROOT_PACKAGE, runs_in_plugin_process

__all__ = ["HostModuleGuard", "install", "refusal"]

_ROSEY_DIR = str(Path(__file__).resolve().parents[1]) + os.sep
_IMPORTLIB_DIR = str(Path(importlib.__file__ or "importlib").resolve().parent) + os.sep
_PREFIX = ROOT_PACKAGE + "."

#: What to use instead, by host module (relative to bot.rosey; the longest prefix wins).
_INSTEAD = {
    "services.storage": "keep data with self.storage (see docs/plugins/storage.md)",
    "storage_config": "keep data with self.storage (see docs/plugins/storage.md)",
    "services.gateway": "make HTTP requests with self.http (see docs/plugins/http.md)",
    "gateway_config": "make HTTP requests with self.http (see docs/plugins/http.md)",
    "services.files": "send files with self.send_file(...) (see docs/plugins/files.md)",
    "files_config": "send files with self.send_file(...) (see docs/plugins/files.md)",
    "testing": "bot.rosey.testing is for your tests, which start the plugin in its own process; "
    f"import it in test files only (see {hints.DOCS}#testing-your-plugin)",
    "config": "a plugin does not read rosey.toml: its settings reach it as environment variables "
    f"(ask the operator for env = [...] under [plugins.NAME]; see {hints.DOCS}#configuration-reference)",
}
_OVER_NATS = (
    "talk to the bot over NATS through the SDK instead (self.publish_result, self.publish_event, "
    f"self.subscribe_to_events; see {hints.DOCS}#publishing-responses)"
)


def refusal(file: str, line: int, module: str) -> str:
    """The hint for plugin code at ``file:line`` importing host module ``module``."""
    relative = module[len(_PREFIX) :] if module.startswith(_PREFIX) else module
    matches = [key for key in _INSTEAD if relative == key or relative.startswith(key + ".")]
    instead = _INSTEAD[max(matches, key=len)] if matches else _OVER_NATS
    return (
        f"{file}:{line} imports {module}, which is Rosey's host code and does not run in a plugin "
        f"process: {instead}"
    )


def _is_machinery(filename: str) -> bool:
    return filename.startswith("<frozen importlib") or filename.startswith(_IMPORTLIB_DIR)


def _importer(frame: FrameType | None) -> tuple[FrameType | None, str | None]:
    """The frame of the import statement, and the module that statement asked for.

    Walks out of the import machinery. ``import a.b.c`` imports ``a.b`` first: the outermost
    ``_find_and_load`` names what the statement asked for (CPython's machinery; without it, the
    guard names the module it was asked to find).
    """
    requested: str | None = None
    while frame is not None and _is_machinery(frame.f_code.co_filename):
        if frame.f_code.co_name == "_find_and_load":
            name = frame.f_locals.get("name")
            if isinstance(name, str):
                requested = name
        frame = frame.f_back
    return frame, requested


class HostModuleGuard:
    """A ``sys.meta_path`` finder that finds nothing: it refuses host modules to plugin code."""

    def __init__(self) -> None:
        self._told: set[tuple[str, int, str]] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if not fullname.startswith(_PREFIX) or runs_in_plugin_process(fullname):
            return None
        frame, requested = _importer(sys._getframe(1))
        if frame is None or frame.f_code.co_filename.startswith(_ROSEY_DIR):
            return None  # Rosey's own import (the house rules cover those)
        module = requested if requested and requested.startswith(fullname) else fullname
        file, line = frame.f_code.co_filename, frame.f_lineno
        message = refusal(file, line, module)
        if (file, line, module) not in self._told:  # once per place, even if the plugin catches it
            self._told.add((file, line, module))
            hints.emit(message)
        raise HostModuleRefused(message, plugin=os.environ.get(Env.PLUGIN_NAME), module=module)


def install() -> HostModuleGuard:
    """Put the guard first on ``sys.meta_path`` (once); returns the installed guard."""
    for finder in sys.meta_path:
        if isinstance(finder, HostModuleGuard):
            return finder
    guard = HostModuleGuard()
    sys.meta_path.insert(0, guard)
    return guard
