"""Why a plugin process failed, in one line, read from what it wrote to stderr.

A plugin that dies before it is ready leaves a traceback (printed with its own frames only, see
:mod:`bot.rosey.plugins.tracebacks`). ``rosey status`` and the ready line need one line of it:
the exception and where it was raised, as ``ModuleNotFoundError: No module named 'requests'
(plugins/weather.py:3)``. The text comes from the plugin, so it is only ever displayed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["summarize_failure"]

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')
# "ValueError: no API key", "requests.exceptions.ConnectionError: ...", "KeyboardInterrupt".
_EXCEPTION = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning)?(?::\s.*)?$"
)
_MAX_LENGTH = 300


def _shown(file: str) -> str:
    try:
        return str(Path(file).relative_to(Path.cwd()))
    except ValueError:
        return file


def summarize_failure(stderr: Sequence[str]) -> str | None:
    """The last traceback's exception line and its innermost frame, or None without a traceback.

    Log prefixes before "Traceback" are tolerated (the SDK logs its traceback after a message).
    """
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
    summary = f"{exception} ({where})" if where else exception
    return summary if len(summary) <= _MAX_LENGTH else summary[: _MAX_LENGTH - 3] + "..."
