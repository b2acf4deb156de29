"""What a host tells the hub every second: ``rosey.hosts.<host>.heartbeat``.

One message carries the host's process id and its plugins' status rows (the same
``PluginStatus`` schema ``rosey status`` reads everywhere). The hub reads it with
:meth:`Heartbeat.from_wire`, which never raises and keeps only the rows of the plugins the hub
itself assigned to that host: a compromised host can say wrong things about its own plugins,
never anything about another's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bot.rosey.supervision.status import PluginStatus
from bot.rosey.terminal import printable

__all__ = ["Heartbeat"]


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    host: str
    pid: int | None
    plugins: tuple[PluginStatus, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "plugins": [p.to_dict() for p in self.plugins]}

    @classmethod
    def from_wire(cls, host: str, data: Mapping[str, Any], allowed: Collection[str]) -> Heartbeat:
        """``host`` comes from the subject (which the hub's server lets only that host publish),
        never from the payload; rows of plugins outside ``allowed`` are dropped."""
        rows: list[PluginStatus] = []
        raw = data.get("plugins")
        for item in raw if isinstance(raw, list) else []:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                continue
            if str(item["name"]).split("#")[0] not in allowed:  # s-spread: replicas are "x#2"
                continue
            # Its words reach the operator's terminal (`rosey status`): control characters escaped.
            clean = {k: printable(v) if isinstance(v, str) else v for k, v in item.items()}
            clean["not_granted"] = [printable(str(v)) for v in _list(item.get("not_granted"))]
            try:
                row = PluginStatus.from_dict({**clean, "history": [], "host": None})
            except (ValueError, TypeError):
                continue
            rows.append(row)
        pid = data.get("pid")
        return cls(
            host=host,
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            plugins=tuple(rows),
        )


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []
