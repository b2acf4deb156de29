"""``[plugins.NAME.storage]``: the storage quotas of one plugin, with their defaults.

::

    [plugins.trivia.storage]
    max_bytes = 10_000_000      # everything the plugin stores, as the NATS server counts it
    max_value_bytes = 65_536    # one value, JSON-encoded
    max_keys = 10_000           # how many keys at once

Every key is optional; an unknown key, a non-integer, or a value below its minimum is a
:class:`~bot.rosey.errors.ConfigError` naming ``plugins.NAME.storage.KEY`` and the reason, like
the rest of ``rosey.toml``. Host-only: the plugin never sees its limits, it meets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.rosey.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_KEYS",
    "DEFAULT_MAX_VALUE_BYTES",
    "MAX_VALUE_BYTES_CEILING",
    "StorageLimits",
    "parse_storage_limits",
]

#: 16 MiB per plugin: thousands of trivia scores, quotes or reminders, and a dozen plugins
#: together still a small fraction of a small server's disk.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: 64 KiB per value: a record, a list of a few hundred items; a whole file belongs elsewhere.
DEFAULT_MAX_VALUE_BYTES = 64 * 1024
DEFAULT_MAX_KEYS = 10_000
#: A value travels in one NATS message (a put request, a get reply): it can never be larger
#: than the largest ``[nats] max_payload`` (64 MiB).
MAX_VALUE_BYTES_CEILING = 64 * 1024 * 1024
# Below these a plugin could store nothing useful (and the bucket's own bookkeeping would not fit).
_MINIMUM = {"max_bytes": 1024, "max_value_bytes": 1, "max_keys": 1}


@dataclass(frozen=True, kw_only=True)
class StorageLimits:
    """One plugin's storage quotas (bytes as the server counts them, one value's bytes, keys)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_keys: int = DEFAULT_MAX_KEYS

    def to_dict(self) -> dict[str, int]:
        return {
            "max_bytes": self.max_bytes,
            "max_value_bytes": self.max_value_bytes,
            "max_keys": self.max_keys,
        }


def parse_storage_limits(plugin: str, table: Mapping[str, Any] | None) -> StorageLimits:
    """The limits ``[plugins.<plugin>.storage]`` sets (``table`` as written), defaults elsewhere."""
    prefix = f"plugins.{plugin}.storage"
    table = table or {}
    if not isinstance(table, Mapping):
        raise ConfigError(f"{prefix}: must be a table, got {table!r}", key=prefix)
    unknown = sorted(set(table) - set(_MINIMUM))
    if unknown:
        key = f"{prefix}.{unknown[0]}"
        raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(_MINIMUM))})", key=key)
    values: dict[str, int] = {}
    for name, minimum in _MINIMUM.items():
        if name not in table:
            continue
        value = table[name]
        key = f"{prefix}.{name}"
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{key}: must be an integer >= {minimum}, got {value!r}", key=key)
        values[name] = value
    limits = StorageLimits(**values)
    if limits.max_value_bytes > MAX_VALUE_BYTES_CEILING:
        key = f"{prefix}.max_value_bytes"
        raise ConfigError(
            f"{key}: must be at most {MAX_VALUE_BYTES_CEILING} (64 MiB, the largest NATS message), "
            f"got {limits.max_value_bytes}",
            key=key,
        )
    if limits.max_value_bytes > limits.max_bytes:
        key = f"{prefix}.max_value_bytes"
        raise ConfigError(
            f"{key}: must not exceed max_bytes ({limits.max_bytes}), got {limits.max_value_bytes}", key=key
        )
    return limits
