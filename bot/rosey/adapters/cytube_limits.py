"""The CyTube server's two throttles, mirrored on the bot's side so the bot stays under them.

Both are read from the real server (calzoneman/sync):

* **Chat** (``src/channel/chat.js`` with ``util.newRateLimiter`` in ``src/utilities.js``): per
  user, shared by chat messages and PMs. After ``burst`` messages, each next one must come at
  least ``1/sustained`` s after the last accepted one, until ``cooldown`` s of silence reset the
  count. The floor is burst 20, sustained 10/s, cooldown 2 s; a channel with ``chat_antiflood``
  on applies its ``chat_antiflood_params`` (default burst 4, sustained 1/s, cooldown 4 s;
  clamped to at most 20 and 10/s) to ranks below 2. A throttled message is dropped and the
  sender gets ``cooldown`` (``1000/sustained`` ms). :class:`ChatPacer` runs the same algorithm
  with margins (80 % of the burst and of the rate, a longer cooldown), and tightens itself when
  a ``cooldown`` still arrives.
* **Connections** (``ipThrottleMiddleware`` in ``src/io/ioserver.js``, ``TokenBucket(5, 0.1)``
  in ``src/util/token-bucket.js``): per IP, a bucket of 5 that gains one token per 10 s (whole
  tokens only; a refill restarts the clock); an empty bucket refuses the socket.io connection
  with "Rate limit exceeded". :class:`ConnectThrottle` keeps the same bucket for the bot's own
  attempts, on disk in the adapter's state directory so that a restarted process remembers.

Plugin-process side: imports only the standard library and ``outbox``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from bot.rosey.adapters.outbox import Pacer

__all__ = ["MIN_ANTIFLOOD", "ChatLimits", "ChatPacer", "ConnectThrottle"]


@dataclass(frozen=True)
class ChatLimits:
    """One setting of the server's chat limiter."""

    burst: int
    sustained: float
    cooldown: float

    @classmethod
    def from_params(cls, raw: object) -> ChatLimits | None:
        """``chat_antiflood_params`` as the server holds them (clamped as it clamps them)."""
        if not isinstance(raw, dict):
            return None
        try:
            burst = min(20, max(1, int(raw.get("burst", 4))))
            sustained = min(10.0, float(raw.get("sustained", 1)))
            if not sustained > 0:
                return None
            cooldown = float(raw.get("cooldown", burst / sustained))
        except (TypeError, ValueError):
            return None
        return cls(burst=burst, sustained=sustained, cooldown=max(0.0, cooldown))


#: The server's floor for everyone, and its limit for PMs (chat.js MIN_ANTIFLOOD).
MIN_ANTIFLOOD = ChatLimits(burst=20, sustained=10.0, cooldown=2.0)
#: What the bot assumes before the channel's options arrive: the stricter channel default.
DEFAULT_ANTIFLOOD = ChatLimits(burst=4, sustained=1.0, cooldown=4.0)


class ChatPacer(Pacer):
    """The server's chat limiter, run ahead of it with margins, on top of the operator's own
    token bucket (``rate`` / ``burst`` settings, the base :class:`Pacer`)."""

    def __init__(self, rate: float, burst: int, *, margin: float = 0.8) -> None:
        super().__init__(rate, burst)
        if not 0 < margin <= 1:
            raise ValueError(f"margin must be in (0, 1], got {margin}")
        self.margin = margin
        self._count = 0
        self._last = -math.inf
        self.limits = DEFAULT_ANTIFLOOD
        self._set(DEFAULT_ANTIFLOOD)
        self.cooldowns = 0  # times the server still said "cooldown"

    def _set(self, limits: ChatLimits) -> None:
        self._burst = max(1, int(limits.burst * self.margin))
        self._gap = 1.0 / (limits.sustained * self.margin)
        self._cooldown = limits.cooldown / self.margin + 0.5

    def use(self, limits: ChatLimits) -> None:
        """Follow the limits the server applies to the bot now (channel options, rank)."""
        if limits != self.limits:
            self.limits = limits
            self._set(limits)

    def _limiter_delay(self, now: float) -> float:
        if self._last < now - self._cooldown or self._count < self._burst:
            return 0.0
        return max(0.0, self._last + self._gap - now)

    def delay(self) -> float:
        now = time.monotonic()
        wait = self._limiter_delay(now)
        if wait > 0:
            return wait
        bucket = super().delay()  # takes the operator's token when it returns 0
        if bucket > 0:
            return bucket
        if self._last < now - self._cooldown:
            self._count = 1
        else:
            self._count += 1
        self._last = now
        return 0.0

    def throttled(self, cooldown_ms: float) -> None:
        """The server dropped a message with ``cooldown``: from now on the bot is at the burst
        cap and never faster than the server said (the next :meth:`wait` holds the re-send)."""
        self.cooldowns += 1
        seconds = max(0.05, float(cooldown_ms) / 1000.0)
        self._gap = max(self._gap, seconds / self.margin)
        self._count = max(self._count, self._burst)
        self._last = time.monotonic()


class ConnectThrottle:
    """The server's per-IP connection bucket, for the bot's own attempts (persisted in ``path``)."""

    def __init__(self, *, burst: int = 5, rate: float = 0.1, path: Path | None = None) -> None:
        if burst < 1 or not rate > 0:
            raise ValueError("connect throttle: burst must be >= 1 and rate > 0")
        self.burst = burst
        self.rate = rate
        self.path = path
        self.count = float(burst)
        self.last_refill = time.time()
        self.refused = 0  # times the server said "Rate limit exceeded"
        self._load()

    def _refill(self, now: float) -> None:
        delta = math.floor((now - self.last_refill) * self.rate)
        if delta > 0:
            self.count = min(self.burst, self.count + delta)
            self.last_refill = now

    def wait_time(self) -> float:
        """Seconds until an attempt would find a token (0: now)."""
        now = time.time()
        self._refill(now)
        if self.count >= 1:
            return 0.0
        return max(0.0, self.last_refill + 1.0 / self.rate - now)

    def take(self) -> None:
        """An attempt is being made now."""
        self._refill(time.time())
        self.count = max(0.0, self.count - 1)
        self._save()

    def refuse(self) -> None:
        """The server refused an attempt: its bucket is empty, and refills from now at best."""
        self.refused += 1
        self.count = 0
        self.last_refill = time.time()
        self._save()

    def _load(self) -> None:
        if self.path is None:
            return
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            raw = json.loads(self.path.read_text())
            count, last = float(raw["count"]), float(raw["last_refill"])
            if 0 <= count <= self.burst and last <= time.time():
                self.count, self.last_refill = count, last

    def _save(self) -> None:
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            self.path.write_text(json.dumps({"count": self.count, "last_refill": self.last_refill}))
