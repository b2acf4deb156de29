"""``self.http``: a plugin's HTTP requests, made for it by the host's gateway.

The plugin needs no network grant: a request travels over NATS, in the plugin's own name, to
the gateway in ``rosey run``, which checks it against the operator's grant in ``rosey.toml``,
adds the secrets the grant names (the plugin never sees them), makes it, and sends back the
response::

    response = await self.http.get("https://api.openweathermap.org/data/2.5/weather",
                                   params={"q": "Paris"})
    if response.ok:
        temperature = response.json()["main"]["temp"]

Errors are raised as the gateway's typed errors (:mod:`bot.rosey.errors`):
:class:`GatewayRefused` (no rule allows it; ``.check`` and ``.rule`` say which), and
:class:`GatewayRateLimited` (``.retry_after`` seconds, ``.limit``), both subclasses of
:class:`GatewayError` (``.reason``: ``timeout``, ``max_response_bytes``, ``connect``,
``too_many_redirects``, ``request_too_large``...). An HTTP error status is not an exception:
look at ``response.status``.
"""

from __future__ import annotations

import base64
import json as jsonlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import GatewayError, PayloadTooLarge, RequestTimeout, ServiceError

__all__ = ["Headers", "HttpClient", "HttpResponse"]

#: How long the SDK waits beyond the request's own timeout for the gateway's answer.
_MARGIN = 5.0
#: Without a timeout of its own, a request lasts at most the grant's timeout, itself at most this.
_LONGEST = 300.0
_UNSET: Any = object()

QueryParams = Mapping[str, str | int | float | Iterable[str | int | float]] | Iterable[tuple[str, str]]


class Headers(Mapping[str, str]):
    """Response headers: case-insensitive; a repeated header reads as its values joined by ', '."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = [(str(k), str(v)) for k, v in pairs]
        self._joined: dict[str, str] = {}
        for key, value in self._pairs:
            low = key.lower()
            self._joined[low] = f"{self._joined[low]}, {value}" if low in self._joined else value

    def __getitem__(self, key: str) -> str:
        return self._joined[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._joined)

    def __len__(self) -> int:
        return len(self._joined)

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key``, in order (``Set-Cookie`` is one per value)."""
        return [v for k, v in self._pairs if k.lower() == key.lower()]

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


@dataclass(frozen=True)
class HttpResponse:
    """What the remote server answered (any status; secrets are already redacted)."""

    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    url: str = ""  # the last URL, after redirects
    redirects: int = 0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        charset = "utf-8"
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> HttpResponse:
        pairs = data.get("headers") or []
        return cls(
            status=int(data["status"]),
            headers=Headers((str(p[0]), str(p[1])) for p in pairs),
            body=base64.b64decode(str(data.get("body_b64") or "")),
            url=str(data.get("url") or ""),
            redirects=int(data.get("redirects") or 0),
        )


def _with_params(url: str, params: QueryParams | None) -> str:
    if not params:
        return url
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((str(key), str(v)) for v in values)
    base, hash_, fragment = url.partition("#")
    joined = f"{base}{'&' if '?' in base else '?'}{urlencode(pairs)}"
    return joined + hash_ + fragment


class HttpClient:
    """The SDK's side of the gateway; a plugin gets one as ``self.http``."""

    def __init__(self, bus: Callable[[], EventBus], plugin: str) -> None:
        self._bus = bus
        self._plugin = plugin

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        json: Any = _UNSET,
        data: bytes | str | Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        """Send ``method url`` through the gateway; ``json=`` or ``data=`` is the body."""
        pairs = [
            (str(k), str(v)) for k, v in (headers.items() if isinstance(headers, Mapping) else headers or ())
        ]
        names = {k.lower() for k, _ in pairs}
        body, content_type = b"", ""
        if json is not _UNSET:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            content_type = "application/json"
        elif isinstance(data, Mapping):
            body, content_type = urlencode(dict(data)).encode(), "application/x-www-form-urlencoded"
        elif data is not None:
            body = data.encode() if isinstance(data, str) else bytes(data)
            content_type = (
                "text/plain; charset=utf-8" if isinstance(data, str) else "application/octet-stream"
            )
        if body and "content-type" not in names:
            pairs.append(("Content-Type", content_type))
        request: dict[str, Any] = {
            "method": method.upper(),
            "url": _with_params(url, params),
            "headers": [list(p) for p in pairs],
            "timeout": timeout,
        }
        if body:
            request["body_b64"] = base64.b64encode(body).decode()
        bus = self._bus()
        subject = Subjects.service("http", self._plugin, "request")
        try:
            reply = await bus.request(
                subject, request, f"plugin-{self._plugin}", timeout=(timeout or _LONGEST) + _MARGIN
            )
        except PayloadTooLarge as exc:
            raise GatewayError(
                f"the request is too large for the bus ({exc.sizes()}; the body travels base64-encoded "
                "within nats max_payload)",
                service="http",
                reason="request_too_large",
                size=exc.size,
                limit=exc.limit,
            ) from None
        except RequestTimeout:
            raise GatewayError(
                "the gateway did not answer in time", service="http", reason="timeout", timeout=timeout
            ) from None
        if not reply.data.get("ok"):
            raise ServiceError.from_wire(reply.data)
        return HttpResponse.from_wire(reply.data)

    async def get(self, url: str, **kwargs: Any) -> HttpResponse:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> HttpResponse:
        return await self.request("POST", url, **kwargs)
