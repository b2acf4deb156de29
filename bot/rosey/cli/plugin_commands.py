"""``rosey plugins list``: each plugin's declared commands, under the table (issue 15).

Read from source like everything else ``plugins list`` shows, so it works without a running bot.
Text is passed through :func:`~bot.rosey.cli.output.print_text`: a declaration cannot hold control
characters (the reader refuses them), and the terminal is protected twice over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.rosey.cli.output import print_text

__all__ = ["print_commands"]


def print_commands(rows: Sequence[Mapping[str, Any]]) -> None:
    """``roll: !roll [NdS...] — Roll dice``, one line per command; plugins without any say so."""
    lines = []
    for row in rows:
        commands = row.get("commands") or []
        if not commands:
            lines.append(f"{row['name']}: (no commands declared)")
        for command in commands:
            about = f" — {command['help']}" if command["help"] else ""
            lines.append(f"{row['name']}: {command['usage']}{about}")
    if lines:
        print_text("commands:\n" + "\n".join(lines))
