"""``[web]``: the operator's HTTP surface of ``rosey run`` (health, readiness, metrics).

::

    [web]
    enabled = true      # false: no port is opened at all
    port = 0            # 0: a free port, chosen by the kernel (printed in the ready line)

It always listens on 127.0.0.1: put a reverse proxy in front to reach it from elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.rosey.errors import ConfigError

__all__ = ["WEB_HOST", "WebConfig", "parse_web"]

#: Loopback only: the endpoints carry no authentication, and plugins cannot reach loopback ports
#: other than NATS (their sandbox's TCP rules).
WEB_HOST = "127.0.0.1"
_KEYS = ("enabled", "port")


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    enabled: bool = True
    port: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"web.enabled: must be true or false, got {self.enabled!r}", key="web.enabled")
        port = self.port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(
                f"web.port: must be an integer in 0..65535 (0: a free port), got {port!r}", key="web.port"
            )


def parse_web(raw: object) -> WebConfig:
    """The ``[web]`` table as written (None: absent); raises :class:`ConfigError` naming the key."""
    if raw is None:
        return WebConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"web: must be a table, got {raw!r}", key="web")
    table: Mapping[str, Any] = raw
    for key in table:
        if key not in _KEYS:
            raise ConfigError(f"web.{key}: unknown key; allowed keys: {', '.join(_KEYS)}", key=f"web.{key}")
    return WebConfig(**table)
