"""``[plugins.NAME.files]``: how big a file one plugin may send, and how long Rosey keeps it.

::

    [plugins.calendar.files]
    max_bytes = 8_388_608       # one file (default 8 MiB); past it send_file raises FileTooLarge
    max_pending = 16            # files of this plugin stored and not yet fetched (or expired) at once
    expire_seconds = 3600       # a file nobody fetched is deleted after this long (default 1 h)

Every key is optional; an unknown key, a non-integer or a value out of range is a
:class:`~bot.rosey.errors.ConfigError` naming ``plugins.NAME.files.KEY``. Host-only: the plugin
never sees its limits, it meets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.rosey.errors import ConfigError

__all__ = [
    "DEFAULT_EXPIRE_SECONDS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PENDING",
    "MAX_BYTES_CEILING",
    "FileLimits",
    "parse_file_limits",
]

#: 8 MiB: an ICS, a CSV, a picture; what Discord takes from a bot without boosts.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_PENDING = 16
DEFAULT_EXPIRE_SECONDS = 3600
#: A file is held on disk and, while an adapter uploads it, in that adapter's memory: 100 MiB at most.
MAX_BYTES_CEILING = 100 * 1024 * 1024
_RANGES = {
    "max_bytes": (1, MAX_BYTES_CEILING),
    "max_pending": (1, 10_000),
    "expire_seconds": (1, 7 * 24 * 3600),
}


@dataclass(frozen=True, kw_only=True)
class FileLimits:
    """One plugin's file limits: one file's bytes, files waiting at once, seconds kept."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pending: int = DEFAULT_MAX_PENDING
    expire_seconds: int = DEFAULT_EXPIRE_SECONDS

    def to_dict(self) -> dict[str, int]:
        return {
            "max_bytes": self.max_bytes,
            "max_pending": self.max_pending,
            "expire_seconds": self.expire_seconds,
        }


def parse_file_limits(plugin: str, table: Mapping[str, Any] | None) -> FileLimits:
    """The limits ``[plugins.<plugin>.files]`` sets (``table`` as written), defaults elsewhere."""
    prefix = f"plugins.{plugin}.files"
    table = table or {}
    if not isinstance(table, Mapping):
        raise ConfigError(f"{prefix}: must be a table, got {table!r}", key=prefix)
    unknown = sorted(set(table) - set(_RANGES))
    if unknown:
        key = f"{prefix}.{unknown[0]}"
        raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(_RANGES))})", key=key)
    values: dict[str, int] = {}
    for name, (low, high) in _RANGES.items():
        if name not in table:
            continue
        value = table[name]
        key = f"{prefix}.{name}"
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{key}: must be an integer from {low} to {high}, got {value!r}", key=key)
        values[name] = value
    return FileLimits(**values)
