"""Text from a plugin, made safe to show a person: every control character escaped and visible.

A plugin's output, its replies and its error messages end up on the operator's terminal
(``rosey run``'s log, ``rosey logs``, the console adapter). Raw control characters there are
commands to the terminal, not text: ESC starts sequences that set the window title, clear the
screen or recolour what follows; CR returns to the start of the line so the rest overwrites it
(a forged ``[canary] ...`` line); BEL rings; the C1 range (U+0080-U+009F) holds one-byte forms of
the same sequences (U+009B is CSI) on terminals that honour them. Unicode bidirectional overrides
and isolates (U+202A-U+202E, U+2066-U+2069, and the marks U+200E, U+200F, U+061C) reorder how the
rest of the line is displayed, so what is read is not what was written; U+2028/U+2029 break a
line for some viewers.

:func:`printable` replaces each of them by an escape that shows what it was (``\\x1b``, ``\\r``,
``\\x07``, ``\\u202e``), and keeps tab. The result contains only printable characters, so applying
it again changes nothing: every place that shows such text may apply it without caring whether
an earlier one did. A backslash is left alone (escaping it would change every Windows path and
regular expression a plugin logs), so a plugin can *write* the four characters ``\\x1b``: that
reads the same as an escaped ESC, which is harmless, since neither does anything to the terminal.
"""

from __future__ import annotations

import re

__all__ = ["printable", "printable_lines"]

# C0 except tab, DEL, C1, the bidi marks, embeddings, overrides and isolates, line/paragraph separators.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` on one line with every control character shown as an escape (``ESC`` -> ``\\x1b``)."""
    if text.isprintable():  # the common case, checked in C: nothing to escape
        return text
    return _UNSAFE.sub(_escape, text)


def printable_lines(text: str, indent: str) -> str:
    """Several lines, each made :func:`printable`; every line after the first starts with ``indent``.

    For text whose line breaks are meant (a multi-line chat reply, a traceback in a log record):
    the breaks stay, but no line can start where a new record or prompt would, so none can pass
    for one. A CR before a line break (CRLF) is dropped rather than shown.
    """
    lines = text.split("\n")
    return ("\n" + indent).join(printable(line.removesuffix("\r")) for line in lines)
