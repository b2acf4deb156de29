"""The HTTP gateway's rules of one request, without I/O: which rule allows it, where a secret
goes, which headers a plugin may set, how fast it may ask, and what is redacted on the way back.
:mod:`bot.rosey.services.gateway` does the I/O around them."""

from __future__ import annotations

import base64
import collections
import json
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, quote_plus, unquote_plus, urlencode

from bot.rosey.errors import GatewayError, GatewayRefused
from bot.rosey.gateway_config import HttpGrant, Target, UrlRule

__all__ = [
    "CROSS_ORIGIN_DROPPED",
    "OWNED_HEADERS",
    "REDACTED",
    "REDIRECTS",
    "SERVICE",
    "Hop",
    "MinuteWindow",
    "Redactor",
    "SecretSource",
    "body_cap",
    "failed",
    "inject_secret",
    "match_rule",
    "plugin_headers",
    "refused",
]

SERVICE = "http"
REDACTED = "[REDACTED]"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Room in a reply for everything but the body (headers: h11 caps them at 16 KiB; the envelope).
REPLY_OVERHEAD = 64 * 1024
#: Headers a plugin may not set: the gateway owns them (or they are hop-by-hop).
OWNED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "accept-encoding",
    }
)
CROSS_ORIGIN_DROPPED = frozenset({"authorization", "cookie"})


class SecretSource(Protocol):
    def read(self) -> str: ...


def body_cap(max_payload: int) -> int:
    """The largest body that fits in one reply: base64 (4/3) beside the headers and envelope."""
    return max(1024, (max_payload - REPLY_OVERHEAD) * 3 // 4)


def refused(message: str, *, check: str, rule: str | None = None) -> GatewayRefused:
    return GatewayRefused(message, service=SERVICE, check=check, rule=rule)


def failed(message: str, *, reason: str, **details: object) -> GatewayError:
    return GatewayError(message, service=SERVICE, reason=reason, **details)


# ---------------------------------------------------------------------------- pieces


class Redactor:
    """Every form in which a secret value could come back, replaced by ``[REDACTED]``."""

    def __init__(self, values: list[str]) -> None:
        forms: set[str] = set()
        for value in values:
            encoded = quote(value, safe="")
            forms.update({value, encoded, encoded.lower(), quote_plus(value), json.dumps(value)[1:-1]})
            forms.add(base64.b64encode(value.encode()).decode())
            forms.update({value.encode().hex(), value.encode().hex().upper()})
        self._text = sorted((f for f in forms if f), key=len, reverse=True)
        self._bytes = [f.encode() for f in self._text]

    def text(self, text: str) -> str:
        for form in self._text:
            text = text.replace(form, REDACTED)
        return text

    def data(self, data: bytes) -> bytes:
        for form in self._bytes:
            data = data.replace(form, REDACTED.encode())
        return data

    def found_in(self, text: str) -> bool:
        return any(form in text for form in self._text)


class MinuteWindow:
    """At most ``limit`` requests in any 60 seconds; :meth:`take` says how long to wait if not."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._times: collections.deque[float] = collections.deque()

    def take(self, now: float) -> float | None:
        while self._times and self._times[0] <= now - 60.0:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return round(self._times[0] + 60.0 - now, 3)
        self._times.append(now)
        return None


@dataclass
class Hop:
    method: str
    target: Target
    headers: list[tuple[str, str]]
    body: bytes


def match_rule(grant: HttpGrant, target: Target, method: str) -> UrlRule:
    """The rule of ``grant`` that allows ``method`` on ``target`` (the longest path prefix), or
    :class:`GatewayRefused` naming the check that failed and the nearest rule."""
    rules = grant.rules
    same_host = [r for r in rules if r.target.host == target.host]
    if not same_host:
        allowed = ", ".join(sorted({r.target.origin for r in rules})) or "none"
        raise refused(f"no rule allows host {target.host} (allowed: {allowed})", check="host", rule=None)
    same_scheme = [r for r in same_host if r.target.scheme == target.scheme]
    if not same_scheme:
        rule = same_host[0]
        raise refused(
            f"{rule.describe()} allows {rule.target.scheme}, not {target.scheme}",
            check="scheme",
            rule=rule.key,
        )
    same_port = [r for r in same_scheme if r.target.port == target.port]
    if not same_port:
        rule = same_scheme[0]
        raise refused(
            f"{rule.describe()} allows port {rule.target.port}, not {target.port}",
            check="port",
            rule=rule.key,
        )
    by_path = [r for r in same_port if r.allows_path(target)]
    if not by_path:
        prefixes = ", ".join(f"{r.key} ({r.target.path})" for r in same_port)
        raise refused(
            f"path {target.path} is outside the allowed prefixes: {prefixes}",
            check="path",
            rule=same_port[0].key,
        )
    with_method = [r for r in by_path if method in r.methods]
    if not with_method:
        rule = by_path[0]
        raise refused(
            f"{rule.describe()} allows {', '.join(sorted(rule.methods))}, not {method}",
            check="method",
            rule=rule.key,
        )
    return max(with_method, key=lambda r: len(r.target.path))


def inject_secret(hop: Hop, rule: UrlRule, secret: str | None) -> tuple[Target, list[tuple[str, str]]]:
    """The hop's target and headers with the rule's secret where the rule says, and only then."""
    target, headers = hop.target, list(hop.headers)
    injection = rule.inject
    if injection is None or secret is None:
        return target, headers
    if injection.kind == "query":
        kept = [
            p for p in target.query.split("&") if p and unquote_plus(p.partition("=")[0]) != injection.name
        ]
        kept.append(urlencode({injection.name: secret}))
        return target.with_query("&".join(kept)), headers
    if injection.kind == "header":
        name, value = injection.name, injection.render(secret)
    else:  # basic
        credentials = f"{injection.name}:{secret}" if injection.name else secret
        name, value = "Authorization", "Basic " + base64.b64encode(credentials.encode()).decode()
    headers = [(k, v) for k, v in headers if k.lower() != name.lower()]
    headers.append((name, value))
    return target, headers


def plugin_headers(raw: object) -> list[tuple[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise failed("headers must be a list of [name, value] pairs", reason="bad_request")
    headers = []
    for pair in raw:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise failed("headers must be a list of [name, value] pairs", reason="bad_request")
        name, value = pair
        if not name or any(c in name for c in " \t\r\n:\x00") or any(c in value for c in "\r\n\x00"):
            raise failed(f"invalid header {name!r}", reason="bad_request")
        if name.lower() not in OWNED_HEADERS:
            headers.append((name, value))
    return headers
