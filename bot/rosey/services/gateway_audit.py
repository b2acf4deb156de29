"""The HTTP gateway's audit log: one record per plugin request, bounded in memory and on disk.

Each record says who asked (plugin), what (method, host, path: never the query, never a header
value), what came of it (status, bytes, ms) and, for a request that did not go out or did not
finish, which check refused it (``refused_by``). Secrets cannot be in it: there is no field a
secret could travel in, and the path is redacted like the response before it is written.

Records go to a deque (the last :data:`MEMORY_RECORDS`) and to ``<state>/gateway/audit.jsonl``,
which is rotated to ``audit.jsonl.1`` past :data:`MAX_FILE_BYTES`, so ``rosey logs --gateway``
works while Rosey runs and after it stopped. Counters per plugin feed ``rosey status --json``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AUDIT_FILE",
    "AuditLog",
    "AuditRecord",
    "PluginCounters",
    "audit_path",
    "gateway_log",
    "read_audit",
]

logger = logging.getLogger(__name__)

AUDIT_FILE = "audit.jsonl"
MEMORY_RECORDS = 1000
MAX_FILE_BYTES = 4 * 1024 * 1024


def audit_path(state_dir: Path) -> Path:
    return state_dir / "gateway" / AUDIT_FILE


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    ts: float
    plugin: str
    method: str
    host: str  # host[:port]
    path: str
    status: int | None = None
    bytes: int = 0  # response body bytes handed to the plugin
    ms: float = 0.0
    redirects: int = 0
    refused_by: str | None = None  # the check or limit that stopped it (None: it went through)

    def line(self) -> str:
        """As ``rosey logs --gateway`` prints it."""
        clock = time.strftime("%H:%M:%S", time.localtime(self.ts))
        outcome = f"refused by {self.refused_by}" if self.refused_by else f"{self.status}"
        hops = f" ({self.redirects} redirects)" if self.redirects else ""
        return (
            f"{clock} {self.plugin} {self.method} {self.host}{self.path} -> {outcome} "
            f"{self.bytes} B {self.ms:.1f} ms{hops}"
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class PluginCounters:
    requests: int = 0  # every request the plugin made
    completed: int = 0  # got an HTTP response (any status)
    refused: int = 0  # refused by a rule or an address check
    limited: int = 0  # refused by requests_per_minute or max_concurrent
    failed: int = 0  # timeouts, too large, connection errors
    bytes_in: int = 0
    bytes_out: int = 0
    in_flight: int = 0


@dataclass
class AuditLog:
    """Records and counters; ``directory`` None keeps them in memory only."""

    directory: Path | None = None
    records: collections.deque[AuditRecord] = field(
        default_factory=lambda: collections.deque(maxlen=MEMORY_RECORDS)
    )
    counters: dict[str, PluginCounters] = field(default_factory=dict)
    _fd: int | None = None
    _size: int = 0

    def open(self) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._reopen()

    def _reopen(self) -> None:
        assert self.directory is not None
        path = self.directory / AUDIT_FILE
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def counter(self, plugin: str) -> PluginCounters:
        counters = self.counters.get(plugin)
        if counters is None:
            counters = self.counters[plugin] = PluginCounters()
        return counters

    def add(self, record: AuditRecord) -> None:
        self.records.append(record)
        if self._fd is None:
            return
        data = (json.dumps(asdict(record), separators=(",", ":")) + "\n").encode()
        try:
            if self._size + len(data) > MAX_FILE_BYTES and self.directory is not None:
                os.close(self._fd)
                self._fd = None
                path = self.directory / AUDIT_FILE
                os.replace(path, path.with_name(AUDIT_FILE + ".1"))
                self._reopen()
            assert self._fd is not None
            self._size += os.write(self._fd, data)
        except OSError as exc:  # a full disk must not fail the request it records
            logger.warning("cannot write the gateway audit log: %s", exc)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Counters per plugin, for ``rosey status --json``."""
        return {plugin: asdict(counters) for plugin, counters in sorted(self.counters.items())}


def read_audit(state_dir: Path, plugin: str | None = None, lines: int = 50) -> list[AuditRecord]:
    """The last ``lines`` records on disk (of ``plugin`` only, when given), oldest first."""
    path = audit_path(state_dir)
    found: list[AuditRecord] = []
    for file in (path.with_name(AUDIT_FILE + ".1"), path):
        with contextlib.suppress(FileNotFoundError), file.open(encoding="utf-8", errors="replace") as stream:
            for text in stream:
                try:
                    record = AuditRecord.from_dict(json.loads(text))
                except (ValueError, TypeError):
                    continue  # a line cut by a crash
                if plugin is None or record.plugin == plugin:
                    found.append(record)
    return found[-lines:] if lines > 0 else found


def gateway_log(state_dir: Path, plugin: str | None, lines: int, *, follow: bool = False) -> int:
    """``rosey logs --gateway [NAME]``: print the last records, oldest first; the exit code."""
    from bot.rosey.errors import CliError

    if follow:
        raise CliError("--follow is not available with --gateway; run it again to see new requests")
    records = read_audit(state_dir, plugin, lines)
    if not records:
        whose = f" of plugin '{plugin}'" if plugin else ""
        print(f"(no gateway requests{whose} recorded in {audit_path(state_dir)})", file=sys.stderr)
    for record in records:
        print(record.line())
    return 0
