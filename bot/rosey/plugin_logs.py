"""Each plugin's output kept on disk, size-bounded, so that it outlives the bot.

``<state_dir>/logs/<plugin>.log`` holds one JSON line per output line (time, stream, text),
rotated at ``max_bytes`` with ``backups`` older files kept (``<plugin>.log.1`` is the newest of
those), so a plugin's disk use for logs is at most ``(backups + 1) * max_bytes``. ``rosey logs``
reads them when no bot is running. JSON lines keep the stream and the exact text (control
characters included, escaped on display), and a partial last line after a crash is skipped.
Writes are buffered and flushed once per event-loop turn at most, so a chatty plugin costs a
memory copy per line, not a system call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from pathlib import Path
from typing import IO

from bot.rosey.plugins.process.output import OutputLine

__all__ = ["PluginLogFiles", "read_plugin_log"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_BACKUPS = 2


class PluginLogFiles:
    """An output listener (``supervisor.add_output_listener(files.write)``) writing per-plugin files."""

    def __init__(
        self, directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        if max_bytes < 1024 or backups < 0:
            raise ValueError("max_bytes must be at least 1024 and backups at least 0")
        self.directory = directory
        self.max_bytes = max_bytes
        self.backups = backups
        self._files: dict[str, IO[str]] = {}
        self._sizes: dict[str, int] = {}
        self._flush_pending = False

    def write(self, plugin: str, line: OutputLine) -> None:
        record = json.dumps({"t": line.timestamp, "stream": line.stream, "text": line.text}) + "\n"
        try:
            handle = self._files.get(plugin) or self._open(plugin)
            if self._sizes[plugin] + len(record) > self.max_bytes:
                handle = self._rotate(plugin)
            handle.write(record)
            self._sizes[plugin] += len(record)
        except OSError as exc:  # a full disk must not take the supervisor down
            logger.warning("cannot write the log file of plugin '%s': %s", plugin, exc)
            return
        if not self._flush_pending:
            self._flush_pending = True
            with contextlib.suppress(RuntimeError):  # no running loop: flushed on close()
                asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        for plugin, handle in self._files.items():
            try:
                handle.flush()
            except OSError as exc:
                logger.warning("cannot write the log file of plugin '%s': %s", plugin, exc)

    def close(self) -> None:
        self.flush()
        for handle in self._files.values():
            with contextlib.suppress(OSError):
                handle.close()
        self._files.clear()

    def _open(self, plugin: str) -> IO[str]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{plugin}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        handle = os.fdopen(fd, "a", encoding="utf-8", buffering=64 * 1024)
        self._files[plugin] = handle
        self._sizes[plugin] = path.stat().st_size
        return handle

    def _rotate(self, plugin: str) -> IO[str]:
        self._files.pop(plugin).close()
        base = self.directory / f"{plugin}.log"
        for index in range(self.backups, 0, -1):
            older = base.with_name(f"{base.name}.{index}")
            newer = base if index == 1 else base.with_name(f"{base.name}.{index - 1}")
            if newer.exists():
                os.replace(newer, older)
        if self.backups == 0:
            base.unlink(missing_ok=True)
        return self._open(plugin)


def read_plugin_log(directory: Path, plugin: str, lines: int) -> list[dict[str, object]]:
    """The last ``lines`` records of ``plugin``'s log files, oldest first; [] when there are none."""
    base = directory / f"{plugin}.log"
    files = [*sorted(directory.glob(f"{plugin}.log.*"), key=lambda p: -_index(p)), base]
    last: deque[dict[str, object]] = deque(maxlen=max(1, lines))
    for path in files:
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                for raw in handle:
                    try:
                        record = json.loads(raw)
                    except ValueError:
                        continue  # a line cut short by a crash
                    if isinstance(record, dict):
                        last.append(record)
        except FileNotFoundError:
            continue
    return list(last)


def _index(path: Path) -> int:
    suffix = path.name.rsplit(".", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0
