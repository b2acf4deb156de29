"""The hints a plugin process wrote (:mod:`bot.rosey.plugins.hints`), read from its output as it arrives.

An output listener of one :class:`~bot.rosey.plugins.plugin_runner.PluginProcess`: it keeps each
distinct hint once, in order, even when the plugin's output is later scrolled out of the kept
lines, and hands out those not handed out yet. The test harness turns them into warnings.
"""

from __future__ import annotations

from pathlib import Path

from bot.rosey.plugins.hints import hint_of, shown
from bot.rosey.plugins.process.output import OutputLine

__all__ = ["HintLog"]

_MAX_HINTS = 100  # a plugin repeating hints at every new place cannot grow this without bound


class HintLog:
    """``output.add_listener(HintLog())``; then :meth:`take` returns the new hints (paths shown
    relative to ``base``, default the working directory)."""

    def __init__(self, base: Path | None = None) -> None:
        self._base = base
        self._seen: set[str] = set()
        self._new: list[str] = []

    def __call__(self, line: OutputLine) -> None:
        if line.stream != "stderr":
            return
        hint = hint_of(line.text)
        if hint is None or hint in self._seen or len(self._seen) >= _MAX_HINTS:
            return
        self._seen.add(hint)
        self._new.append(shown(hint, self._base))

    @property
    def seen(self) -> int:
        return len(self._seen)

    def take(self) -> list[str]:
        new, self._new = self._new, []
        return new
