"""Hints: one line a plugin process writes to say what the plugin's author did wrong, where, and the fix.

A plugin that imports Rosey's host code (:mod:`bot.rosey.plugins.host_guard`) or blocks its
event loop (:mod:`bot.rosey.plugins.loop_watch`) is told so in one line on its stderr::

    rosey hint: /srv/bot/plugins/slow.py:14 (in handle_command) blocked the event loop ...

The line starts with :data:`HINT_PREFIX` (after the plugin's log prefix, if it went through
logging); it names the file and line first, then the mistake and the fix. Everything that shows
a plugin's output shows it (``rosey logs``, ``rosey run``'s log, ``rosey dev``); the host reads
it back with :func:`hint_of` for the one-line reason of a failed start
(:mod:`bot.rosey.plugins.process.failure`) and the test harness's warnings. It comes from the
plugin, so the host only ever displays it.

Both ends import this module: the standard library only.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = ["DOCS", "HINT_EVENT", "HINT_PREFIX", "Hint", "HintKind", "emit", "hint_of", "shown"]

HINT_PREFIX = "rosey hint: "
#: The plugin event (``rosey.plugins.<name>.hint``) a running plugin also publishes each hint on.
HINT_EVENT = "hint"
#: Where the plugin guide lives, for the "see ..." of each hint.
DOCS = "docs/plugins/PLUGIN-DEVELOPMENT.md"

_LOCATION = re.compile(r"^(?P<file>/[^:\n]+):(?P<line>\d+)(?P<rest>.*)$")


class HintKind(StrEnum):
    HOST_IMPORT = "host_import"
    BLOCKED_LOOP = "blocked_loop"


@dataclass(frozen=True, kw_only=True)
class Hint:
    """One hint: what kind, where (the plugin's file and line) and the whole sentence."""

    kind: HintKind
    file: str
    line: int
    message: str  # starts with "<file>:<line> "

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", HintKind(self.kind))
        if self.line < 0:
            raise ValueError(f"line must not be negative, got {self.line}")
        if "\n" in self.message:
            raise ValueError("a hint is one line")

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "file": self.file, "line": self.line, "message": self.message}


def emit(message: str) -> None:
    """Write the hint line to stderr at once (before logging is configured, or without it)."""
    sys.stderr.write(f"{HINT_PREFIX}{message}\n")
    sys.stderr.flush()


def hint_of(line: str) -> str | None:
    """The hint in one line of a plugin's output, or None if the line holds none."""
    start = line.find(HINT_PREFIX)
    if start < 0:
        return None
    return line[start + len(HINT_PREFIX) :].strip() or None


def shown(hint: str, base: Path | None = None) -> str:
    """``hint`` with its leading file made relative to ``base`` (default: the working directory)
    when it lies under it: ``plugins/slow.py:14 ...`` rather than the absolute path."""
    match = _LOCATION.match(hint)
    if match is None:
        return hint
    try:
        relative = Path(match["file"]).relative_to(base or Path.cwd())
    except ValueError:
        return hint
    return f"{relative}:{match['line']}{match['rest']}"
