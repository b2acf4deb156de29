"""How the CLI prints: aligned tables for people, JSON for scripts, log lines with their stream."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["print_json", "print_line", "table"]


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Columns padded to their widest cell, headers upper-cased, None shown as "-"."""
    cells = [[("-" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def print_line(line: Mapping[str, Any]) -> None:
    """One line of a plugin's output, as ``rosey logs`` shows it."""
    stream = "err" if line.get("stream") == "stderr" else "out"
    print(f"[{stream}] {line.get('text', '')}", flush=True)
