"""What a plugin asks the operator for, declared next to its code: ``requests = Requests(...)``.

::

    from bot.rosey.plugins.permissions import Http, Requests, Storage

    class WeatherPlugin(PluginInterface):
        plugin_name = "weather"
        requests = Requests(
            http=[Http("https://api.openweathermap.org/data/2.5/", reason="current weather")],
            storage=Storage(max_bytes=1_000_000),
        )

A declaration grants nothing. The operator grants in ``rosey.toml``; the plugin always starts
with exactly what was granted there. The host reads the declaration from the plugin's *source*
(``ast``, never importing it: see ``plugins/declared_requests.py``), compares it with the grants
and says what was requested and not granted: ``rosey plugins review NAME``, ``rosey status``,
and one line in the plugin's log at each start.

Because the host only reads source, the declaration must be written out literally: the
``Requests(...)``, ``Http(...)``, ``Storage(...)`` and ``Files(...)`` calls with strings, whole
numbers and lists of them as arguments. A name, an f-string or an expression cannot be read
without running the plugin and is reported as a problem instead.

These classes check their own arguments' types when the plugin runs, so a typo fails in the
author's tests (``PluginHarness``) too; the host applies the same rules when it reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass

__all__ = ["Files", "Http", "Requests", "Storage"]

# The SDK's own checks, shared with the host's reader (which repeats them on source, not values).
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{field} must be a non-empty string, got {value!r}")
    return value


def _texts(field: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{field} must be a list of strings, got {value!r}")
    return tuple(_text(f"{field}[{index}]", item) for index, item in enumerate(value))


def _count(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"{field} must be a positive whole number, got {value!r}")
    return value


@dataclass(frozen=True)
class Http:
    """A URL prefix (or a bare host name, meaning ``https://HOST/``) the plugin fetches through
    the HTTP gateway, why, and with which methods."""

    url: str
    _: KW_ONLY
    reason: str = ""
    methods: Sequence[str] = ("GET",)

    def __post_init__(self) -> None:
        _text("Http.url", self.url)
        if not isinstance(self.reason, str):
            raise TypeError(f"Http.reason must be a string, got {self.reason!r}")
        methods = _texts("Http.methods", self.methods)
        for method in methods:
            if method.upper() not in HTTP_METHODS:
                raise TypeError(f"Http.methods: {method!r} is not one of {', '.join(HTTP_METHODS)}")
        object.__setattr__(self, "methods", tuple(m.upper() for m in methods))


@dataclass(frozen=True, kw_only=True)
class Storage:
    """The storage quotas the plugin needs (``[plugins.NAME.storage]``); None: the default is enough."""

    max_bytes: int | None = None
    max_value_bytes: int | None = None
    max_keys: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_value_bytes", "max_keys"):
            _count(f"Storage.{name}", getattr(self, name))


@dataclass(frozen=True, kw_only=True)
class Files:
    """The file limits the plugin needs (``[plugins.NAME.files]``); None: the default is enough."""

    max_bytes: int | None = None
    max_pending: int | None = None
    expire_seconds: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pending", "expire_seconds"):
            _count(f"Files.{name}", getattr(self, name))


@dataclass(frozen=True, kw_only=True)
class Requests:
    """Everything a plugin asks for; each field maps to one grant of ``[plugins.NAME]``.

    ``read_paths``/``write_paths`` (absolute paths), ``network`` (``"host:port"`` TCP
    destinations), ``http`` (:class:`Http` through the gateway), ``storage`` / ``files``
    (quotas), ``events`` (NATS subjects it subscribes to, e.g. ``"rosey.events.message"``),
    ``publish`` (subjects it publishes to beyond its own), ``env`` (host environment variables),
    ``max_processes`` (child processes it starts).
    """

    read_paths: Sequence[str] = ()
    write_paths: Sequence[str] = ()
    network: Sequence[str] = ()
    http: Sequence[Http] = ()
    storage: Storage | None = None
    files: Files | None = None
    events: Sequence[str] = ()
    publish: Sequence[str] = ()
    env: Sequence[str] = ()
    max_processes: int = 0

    def __post_init__(self) -> None:
        for name in ("read_paths", "write_paths", "network", "events", "publish", "env"):
            object.__setattr__(self, name, _texts(f"Requests.{name}", getattr(self, name)))
        if isinstance(self.http, (str, Http)) or not isinstance(self.http, Sequence):
            raise TypeError(f"Requests.http must be a list of Http(...), got {self.http!r}")
        if not all(isinstance(item, Http) for item in self.http):
            raise TypeError("Requests.http must hold Http(...) entries only")
        object.__setattr__(self, "http", tuple(self.http))
        if self.storage is not None and not isinstance(self.storage, Storage):
            raise TypeError(f"Requests.storage must be Storage(...), got {self.storage!r}")
        if self.files is not None and not isinstance(self.files, Files):
            raise TypeError(f"Requests.files must be Files(...), got {self.files!r}")
        if self.max_processes != 0:
            _count("Requests.max_processes", self.max_processes)
