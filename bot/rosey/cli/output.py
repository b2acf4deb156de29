"""How the CLI prints: aligned tables for people, JSON for scripts, log lines with their stream.

Whatever a plugin wrote (its output, its replies, what it claims in a ping) is shown through
:func:`~bot.rosey.terminal.printable`: a plugin's control characters are shown, never obeyed by
the terminal. The running bot escapes output lines already; the CLI does it again (it changes
nothing then) so that it never relies on the other end.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from bot.rosey.terminal import printable, printable_lines

__all__ = ["PrintableFormatter", "print_json", "print_line", "print_text", "table"]


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Columns padded to their widest cell, headers upper-cased, None shown as "-"."""
    cells = [[("-" if row.get(c) is None else printable(str(row.get(c)))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def print_line(line: Mapping[str, Any]) -> None:
    """One line of a plugin's output, as ``rosey logs`` shows it."""
    stream = {"stderr": "err", "rosey": "rosey"}.get(str(line.get("stream")), "out")  # rosey: the host's
    print(f"[{stream}] {printable(str(line.get('text', '')))}", flush=True)


def print_text(text: str, *, error: bool = False) -> None:
    """A plugin's reply, its line breaks kept (continuation lines indented)."""
    print(printable_lines(text, "  "), file=sys.stderr if error else sys.stdout)


class PrintableFormatter(logging.Formatter):
    """Log records with every control character escaped, whoever put it in the message.

    Plugin output is escaped when captured, but other records quote what a plugin chose too (an
    error it answered with, a client name in a NATS server line). A message's own line breaks
    stay, its continuation lines indented, so no line of it can pass for a record of its own.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable_lines(super().formatMessage(record), "    ")
