"""issue 16: the command ledger of a replica, so a dead replica's commands get their answer at once.

NATS spreads a plugin's commands over its replicas (one queue group) and does not say which
replica took which command. When a replica dies, the router must fail (or re-send) the commands
that replica held, and only those. So a replica keeps its readiness pipe open after READY and
writes one line per command it takes (``T <correlation id>``) and one per command it answers
(``D <correlation id>``); the host reads them as they come. A pipe survives its writer: what
the replica wrote before SIGKILL is still there to read when the supervisor sees it dead, so the
open set is exact up to the commands NATS delivered to its socket that it never read (those
it never ran either; the router's barrier finds them: plugins/barrier.py).

The lines come from plugin code's process, so the host trusts them with nothing but the fate
of that plugin's own commands; the open set is bounded (:data:`MAX_OPEN`).

Both ends live here (the standard library only: plugin processes import it).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Iterable

from bot.rosey.plugins.contract import Env

__all__ = ["IDEMPOTENT_LINE", "MAX_OPEN", "CommandLedger", "LedgerWriter"]

TAKE = b"T "
DONE = b"D "
#: The SDK's line for a plugin class with ``idempotent = True``: its dead replica's commands are
#: re-sent once to a surviving replica instead of failed.
IDEMPOTENT_LINE = b"IDEMPOTENT\n"
#: Open commands kept per replica; beyond it the oldest are forgotten (they meet the timeout).
MAX_OPEN = 10_000
#: s-inflight: answered commands a replica still remembers for a barrier (see plugins/barrier.py):
#: its answer may still be on its way to the router when the router asks.
RECENT_DONE = 1024
_MAX_ID = 128


class LedgerWriter:
    """The replica's side: one ``os.write`` per line (atomic below PIPE_BUF, so lines never mix)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        # s-inflight: the same facts in memory, for the barrier's answer (plugins/barrier.py); kept
        # even when the pipe breaks, since the router asks this process, not the host.
        self._tracking = fd is not None
        self._open: set[str] = set()
        self._recent: deque[str] = deque(maxlen=RECENT_DONE)
        self.declared_idempotent = False  # said in the barrier's answer (a lost host's commands)

    @classmethod
    def from_environment(cls) -> LedgerWriter:
        """The readiness pipe, if this process is a replica (``ROSEY_REPLICA`` set); else a no-op."""
        raw = os.environ.get(Env.READY_FD)
        if not os.environ.get(Env.REPLICA) or not raw or not raw.isdigit():
            return cls(None)
        return cls(int(raw))

    def _write(self, line: bytes) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, line)
        except OSError:  # the host stopped listening: commands go on without the ledger
            self.fd = None

    def take(self, correlation_id: str | None) -> None:
        if self._tracking and correlation_id and _usable(correlation_id):
            self._open.add(correlation_id)
            if len(self._open) > MAX_OPEN:  # the host forgets these too: the bound is the same
                self._open.pop()
            self._write(TAKE + correlation_id.encode() + b"\n")

    def done(self, correlation_id: str | None) -> None:
        if self._tracking and correlation_id and _usable(correlation_id):
            self._open.discard(correlation_id)
            self._recent.append(correlation_id)
            self._write(DONE + correlation_id.encode() + b"\n")

    def holds(self, correlation_ids: Iterable[str]) -> list[str]:
        """s-inflight: those of ``correlation_ids`` this replica took (open, or answered lately)."""
        recent = set(self._recent)
        return [cid for cid in correlation_ids if cid in self._open or cid in recent]

    def idempotent(self) -> None:
        self.declared_idempotent = True
        self._write(IDEMPOTENT_LINE)


def _usable(correlation_id: str) -> bool:
    return len(correlation_id) <= _MAX_ID and correlation_id.isprintable() and " " not in correlation_id


class CommandLedger:
    """The host's side: the commands one replica took and has not answered yet."""

    def __init__(self) -> None:
        self._open: OrderedDict[str, None] = OrderedDict()
        self.idempotent = False
        self._pending = bytearray()

    def feed(self, data: bytes) -> None:
        """Bytes read from the pipe, in any chunking."""
        self._pending.extend(data)
        while (end := self._pending.find(b"\n")) >= 0:
            self.line(bytes(self._pending[: end + 1]))
            del self._pending[: end + 1]
        if len(self._pending) > 4096:  # not this protocol: drop it rather than grow
            self._pending.clear()

    def line(self, line: bytes) -> None:
        if line.startswith(TAKE):
            cid = line[2:-1].decode(errors="replace")
            self._open[cid] = None
            if len(self._open) > MAX_OPEN:
                self._open.popitem(last=False)
        elif line.startswith(DONE):
            self._open.pop(line[2:-1].decode(errors="replace"), None)
        elif line == IDEMPOTENT_LINE:
            self.idempotent = True

    def open(self) -> tuple[str, ...]:
        """The correlation ids taken and not answered, oldest first."""
        return tuple(self._open)

    def clear(self) -> None:
        self._open.clear()
        self._pending.clear()
        self.idempotent = False
