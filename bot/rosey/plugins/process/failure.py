"""Why a plugin process failed, in one line, read from what it wrote to stderr.

A plugin that dies before it is ready leaves a traceback (printed with its own frames only, see
:mod:`bot.rosey.plugins.tracebacks`). ``rosey status`` and the ready line need one line of it:
the exception and where it was raised, as ``ModuleNotFoundError: No module named 'requests'
(plugins/weather.py:3)``. A plugin process that wrote a hint (:mod:`bot.rosey.plugins.hints`:
the file, the line and the fix, e.g. for an import of Rosey's host code) and left no other
traceback gets that hint as its line. The text comes from the plugin, so it is only ever displayed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bot.rosey.plugins.hints import hint_of, shown

__all__ = ["summarize_failure"]

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')
# "ValueError: no API key", "requests.exceptions.ConnectionError: ...", "KeyboardInterrupt".
_EXCEPTION = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning)?(?::\s.*)?$"
)
_MAX_LENGTH = 300
_MAX_HINT_LENGTH = 600  # a hint is a sentence with its fix: shown whole


def _shown(file: str) -> str:
    try:
        return str(Path(file).relative_to(Path.cwd()))
    except ValueError:
        return file


def summarize_failure(stderr: Sequence[str]) -> str | None:
    """The last traceback's exception line and its innermost frame; else the last hint; else None.

    Log prefixes before "Traceback" are tolerated (the SDK logs its traceback after a message).
    A traceback whose exception carries a hint's text (a refused import raised from ``on_start``)
    is summarized as that hint.
    """
    found = [hint for line in stderr if (hint := hint_of(line)) is not None]
    summary = _summarize_traceback(stderr)
    if found and (summary is None or any(summary.partition(": ")[2].startswith(h) for h in found)):
        return _cut(shown(found[-1]), _MAX_HINT_LENGTH)
    return None if summary is None else _cut(summary, _MAX_LENGTH)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _summarize_traceback(stderr: Sequence[str]) -> str | None:
    start = max(
        (i for i, line in enumerate(stderr) if line.rstrip().endswith("Traceback (most recent call last):")),
        default=None,
    )
    if start is None:
        return None
    where: str | None = None
    exception: str | None = None
    for line in stderr[start + 1 :]:
        if frame := _FRAME.match(line):
            where = f"{_shown(frame['file'])}:{frame['line']}"
            continue
        if line.startswith((" ", "\t")) or not line.strip():
            continue  # source lines and carets under a frame
        if _EXCEPTION.match(line.strip()):
            exception = line.strip()
            break
    if exception is None:
        return None
    return f"{exception} ({where})" if where else exception
