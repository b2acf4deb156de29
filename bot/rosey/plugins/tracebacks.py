"""Tracebacks as a plugin author needs them: the plugin's own frames, not Rosey's machinery.

An exception raised by plugin code travels through the launcher, ``runpy`` and the SDK before
it is printed; those frames are the same for every plugin and hide the one line that matters.
:func:`format_plugin_exception` keeps the plugin's frames (and any library it called) and drops
the frames of the ``bot.rosey`` package and of Python's frozen import machinery. It runs inside
the plugin process; the host reads the result from the plugin's stderr.
"""

from __future__ import annotations

import traceback
from pathlib import Path

__all__ = ["format_plugin_exception"]

_ROSEY_PACKAGE = str(Path(__file__).resolve().parents[1]) + "/"


def _is_machinery(filename: str) -> bool:
    return filename.startswith(("<frozen ", "<string>")) or filename.startswith(_ROSEY_PACKAGE)


def format_plugin_exception(exc: BaseException) -> str:
    """``Traceback ... <the plugin's frames> ... ValueError: no API key`` (chained causes too)."""
    lines: list[str] = []
    for part in traceback.TracebackException.from_exception(exc).format():
        if part.startswith('  File "'):
            filename = part[len('  File "') :].split('"', 1)[0]
            if _is_machinery(filename):
                continue
        lines.append(part)
    return "".join(lines)
