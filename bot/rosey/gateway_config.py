"""``[plugins.NAME.http]``: what a plugin may ask the HTTP gateway for, and URLs in one canonical form.

A grant is a list of URL rules plus limits::

    [plugins.weather.http]
    allow = [{ url = "https://api.openweathermap.org/data/2.5/", methods = ["GET"],
               secret = "weather_key", inject = "query:appid" }]
    requests_per_minute = 60

A rule allows one scheme, host and port, and a path prefix (on segment boundaries: ``/api``
allows ``/api`` and ``/api/x``, not ``/apiary``). Rules and requests go through the same
:func:`parse_target`, so what is compared is what is sent: hosts in lowercase ASCII (IDNA via
UTS #46, one trailing dot dropped), IPv4 only as a dotted quad, paths with their percent-escapes
of unreserved characters decoded and the rest in uppercase. What could mean two things to two
parsers is refused outright, not normalised: userinfo (``https://good@evil/``), dot segments
(``..``, ``%2e%2e``), encoded slashes and backslashes, control characters and whitespace, and
numeric host spellings such as ``2130706433`` or ``0x7f.1``.

Secrets named by a rule must exist in ``[secrets]``; a rule binds its secret to its own host, and
says where the gateway puts it (``inject``):

* ``header:Authorization=Bearer {secret}`` (or ``header:X-Api-Key``: the header is the secret),
* ``query:appid`` (a query parameter),
* ``basic`` (the secret is ``user:password``) or ``basic:USER`` (the secret is the password).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from bot.rosey.errors import ConfigError, GatewayRefused

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_REQUESTS_PER_MINUTE",
    "DEFAULT_TIMEOUT",
    "METHODS",
    "HttpGrant",
    "Injection",
    "Target",
    "UrlRule",
    "parse_http_grant",
    "parse_http_grants",
    "parse_target",
]

DEFAULT_REQUESTS_PER_MINUTE = 60
DEFAULT_MAX_CONCURRENT = 4
#: The body must fit in one NATS reply once base64-encoded (nats' default max_payload is 1 MB).
DEFAULT_MAX_RESPONSE_BYTES = 512 * 1024
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_REDIRECTS = 5
MAX_TIMEOUT = 300.0
MAX_RESPONSE_CEILING = 64 * 1024 * 1024  # nats-server's largest max_payload
MAX_URL_LENGTH = 8192
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_PORTS = {"http": 80, "https": 443}

_RULE_KEYS = ("url", "methods", "secret", "inject", "allow_private")
_GRANT_KEYS = (
    "allow",
    "requests_per_minute",
    "max_concurrent",
    "max_response_bytes",
    "timeout",
    "max_redirects",
)
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)
_QUERY_NAME = re.compile(r"[A-Za-z0-9._~-]+")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _problem(check: str, reason: str) -> GatewayRefused:
    """A URL Rosey will not use; ``check`` names what failed (``scheme``, ``userinfo``, ``path``...)."""
    return GatewayRefused(reason, service="http", check=check)


# ---------------------------------------------------------------------------- URLs


@dataclass(frozen=True, kw_only=True)
class Target:
    """A URL in canonical form: what rules compare and what the gateway sends."""

    scheme: str
    host: str  # lowercase ASCII; an IPv6 address without brackets
    port: int
    path: str  # starts with "/", percent-escapes canonical, no dot segments
    query: str = ""  # as written (never compared; the gateway may add to it)

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host as an address, when it is one."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def netloc(self) -> str:
        """``host[:port]`` as a ``Host`` header says it (the port only when not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def url(self) -> str:
        return f"{self.origin}{self.path}" + (f"?{self.query}" if self.query else "")

    def with_query(self, query: str) -> Target:
        return Target(scheme=self.scheme, host=self.host, port=self.port, path=self.path, query=query)


def _canonical_host(raw: str) -> str:
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise _problem("host", f"invalid IPv6 host {raw!r}")
        try:
            address = ipaddress.IPv6Address(raw[1:-1])
        except ValueError:
            raise _problem("host", f"invalid IPv6 host {raw!r}") from None
        return address.compressed
    host = raw[:-1] if raw.endswith(".") else raw
    if not host:
        raise _problem("host", "the URL has no host")
    labels = host.split(".")
    if _NUMERIC_HOST.fullmatch(labels[-1]):
        # Only the dotted quad: inet_aton also reads "2130706433", "127.1" and "0x7f.1" as
        # 127.0.0.1, and a rule for one spelling must not be passed by another.
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise _problem("host", f"{raw!r} is neither a host name nor a dotted-quad IPv4 address") from None
    if host.isascii():
        host = host.lower()
    else:
        import idna  # only for international names; a dependency of httpx

        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise _problem("host", f"invalid international host name {raw!r}: {exc}") from None
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise _problem("host", f"invalid host name {raw!r}")
    return host


def _canonical_path(raw: str) -> str:
    if not raw:
        return "/"
    lowered = raw.lower()
    if "%2f" in lowered or "%5c" in lowered:
        raise _problem("path", "an encoded '/' or '\\' in the path is refused (servers disagree on it)")
    if "%" in _ESCAPE.sub("", raw):
        raise _problem("path", "a '%' in the path that is not a percent-escape")
    for segment in raw.split("/"):
        decoded = unquote(segment)
        if decoded in (".", "..") or "\x00" in decoded:
            raise _problem("path", "dot segments ('.', '..', '%2e%2e') are refused in paths")

    def normal(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    return _ESCAPE.sub(normal, raw)


def parse_target(url: object) -> Target:
    """``url`` in canonical form, or :class:`GatewayRefused` saying why it is refused (``.check``)."""
    if not isinstance(url, str) or not url:
        raise _problem("url", f"a URL must be a non-empty string, got {url!r}")
    if len(url) > MAX_URL_LENGTH:
        raise _problem("url", f"the URL is longer than {MAX_URL_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(url) or "\\" in url:
        raise _problem("url", "whitespace, control characters and '\\' are refused in URLs")
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
    except ValueError as exc:
        raise _problem("url", f"not a valid URL: {exc}") from None
    if scheme not in DEFAULT_PORTS:
        raise _problem("scheme", f"only http and https URLs are allowed, got {parts.scheme or 'none'!r}")
    netloc = parts.netloc
    if "@" in netloc:
        raise _problem("userinfo", "user names and passwords in URLs are refused (use a secret)")
    host_part, port_text = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        host_part, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _problem("host", f"invalid host {netloc!r}")
        port_text = rest[1:]
    elif ":" in netloc:
        host_part, _, port_text = netloc.rpartition(":")
    host = _canonical_host(host_part)
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise _problem("port", f"invalid port {port_text!r}")
        port = int(port_text)
    else:
        port = DEFAULT_PORTS[scheme]
    return Target(scheme=scheme, host=host, port=port, path=_canonical_path(parts.path), query=parts.query)


def path_within(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or below it, on segment boundaries."""
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix[:-1]
    return path == prefix or path.startswith(prefix + "/")


# ---------------------------------------------------------------------------- grants


@dataclass(frozen=True, kw_only=True)
class Injection:
    """Where the gateway puts a secret: ``kind`` is ``header``, ``query`` or ``basic``."""

    kind: str
    name: str = ""  # the header, the query parameter, or the basic-auth user name
    template: str = "{secret}"  # for headers

    def render(self, secret: str) -> str:
        return self.template.replace("{secret}", secret)


@dataclass(frozen=True, kw_only=True)
class UrlRule:
    key: str  # "plugins.weather.http.allow[0]", for messages
    url: str  # as written
    target: Target
    methods: frozenset[str]
    secret: str | None = None
    inject: Injection | None = None
    allow_private: bool = False

    def allows_path(self, target: Target) -> bool:
        own = self.target
        return (target.scheme, target.host, target.port) == (own.scheme, own.host, own.port) and path_within(
            target.path, own.path
        )

    def describe(self) -> str:
        return f"{self.key} ({self.url})"


@dataclass(frozen=True, kw_only=True)
class HttpGrant:
    """One plugin's ``[plugins.NAME.http]``: its URL rules and limits."""

    plugin: str
    rules: tuple[UrlRule, ...] = ()
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    timeout: float = DEFAULT_TIMEOUT
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(rule.secret for rule in self.rules if rule.secret)


class _HasHttp(Protocol):
    @property
    def http(self) -> Mapping[str, Any]: ...


def _fail(key: str, reason: str) -> ConfigError:
    return ConfigError(f"{key}: {reason}", key=key)


def _int(key: str, value: object, *, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (maximum and value > maximum):
        bound = f" and at most {maximum}" if maximum else ""
        raise _fail(key, f"must be a positive integer{bound}, got {value!r}")
    return value


def _injection(key: str, value: object) -> Injection:
    if not isinstance(value, str) or not value:
        raise _fail(key, f"must be 'header:NAME=...{{secret}}...', 'query:NAME' or 'basic', got {value!r}")
    kind, _, rest = value.partition(":")
    if kind == "header":
        name, has_template, template = rest.partition("=")
        template = template if has_template else "{secret}"
        if not _TOKEN.fullmatch(name):
            raise _fail(key, f"{name!r} is not a valid header name")
        if template.count("{secret}") != 1 or _CONTROL.search(template):
            raise _fail(
                key, f"the header value must hold '{{secret}}' once and no line breaks, got {template!r}"
            )
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
            raise _fail(key, f"the gateway sets {name} itself")
        return Injection(kind="header", name=name, template=template)
    if kind == "query":
        if not _QUERY_NAME.fullmatch(rest):
            raise _fail(key, f"{rest!r} is not a valid query parameter name")
        return Injection(kind="query", name=rest)
    if kind == "basic" and (not rest or (":" not in rest and _QUERY_NAME.fullmatch(rest))):
        return Injection(kind="basic", name=rest)
    raise _fail(
        key, f"must be 'header:NAME=...{{secret}}...', 'query:NAME', 'basic' or 'basic:USER', got {value!r}"
    )


def _rule(key: str, table: object, secrets: Mapping[str, object]) -> UrlRule:
    if not isinstance(table, Mapping):
        raise _fail(key, f'must be a table like {{ url = "https://...", methods = ["GET"] }}, got {table!r}')
    for name in table:
        if name not in _RULE_KEYS:
            raise _fail(f"{key}.{name}", f"unknown key; allowed keys: {', '.join(_RULE_KEYS)}")
    url = table.get("url")
    try:
        target = parse_target(url)
    except GatewayRefused as exc:
        raise _fail(f"{key}.url", str(exc)) from None
    if target.query or "#" in str(url):
        raise _fail(f"{key}.url", "a rule is a scheme, host, port and path prefix: no query or fragment")
    methods = table.get("methods", ["GET"])
    if not isinstance(methods, list) or not methods:
        raise _fail(f"{key}.methods", f'must be a non-empty list like ["GET", "POST"], got {methods!r}')
    for index, method in enumerate(methods):
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise _fail(f"{key}.methods[{index}]", f"must be one of {', '.join(METHODS)}, got {method!r}")
    allow_private = table.get("allow_private", False)
    if not isinstance(allow_private, bool):
        raise _fail(f"{key}.allow_private", f"must be true or false, got {allow_private!r}")
    secret, inject = table.get("secret"), table.get("inject")
    if secret is None and inject is not None:
        raise _fail(f"{key}.inject", 'needs a secret (secret = "NAME" of a [secrets.NAME] table)')
    injection = None
    if secret is not None:
        if not isinstance(secret, str) or secret not in secrets:
            known = ", ".join(sorted(secrets)) or "none"
            raise _fail(f"{key}.secret", f"no [secrets.{secret}] table (secrets defined: {known})")
        if inject is None:
            raise _fail(f"{key}.inject", "a secret needs inject = 'header:...', 'query:...' or 'basic'")
        injection = _injection(f"{key}.inject", inject)
    return UrlRule(
        key=key,
        url=str(url),
        target=target,
        methods=frozenset(m.upper() for m in methods),
        secret=secret,
        inject=injection,
        allow_private=allow_private,
    )


def parse_http_grant(
    plugin: str, table: Mapping[str, Any], secrets: Mapping[str, object]
) -> HttpGrant | None:
    """The grant in ``[plugins.<plugin>.http]`` (None when the table is empty)."""
    if not table:
        return None
    dotted = f"plugins.{plugin}.http"
    for name in table:
        if name not in _GRANT_KEYS:
            raise _fail(f"{dotted}.{name}", f"unknown key; allowed keys: {', '.join(_GRANT_KEYS)}")
    allow = table.get("allow", [])
    if not isinstance(allow, list):
        raise _fail(
            f"{dotted}.allow", f'must be a list of rules like [{{ url = "https://..." }}], got {allow!r}'
        )
    rules = tuple(_rule(f"{dotted}.allow[{index}]", rule, secrets) for index, rule in enumerate(allow))
    timeout = table.get("timeout", DEFAULT_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT)
    ):
        raise _fail(
            f"{dotted}.timeout",
            f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, got {timeout!r}",
        )
    redirects = table.get("max_redirects", DEFAULT_MAX_REDIRECTS)
    if isinstance(redirects, bool) or not isinstance(redirects, int) or not 0 <= redirects <= 20:
        raise _fail(f"{dotted}.max_redirects", f"must be an integer from 0 to 20, got {redirects!r}")
    return HttpGrant(
        plugin=plugin,
        rules=rules,
        requests_per_minute=_int(
            f"{dotted}.requests_per_minute", table.get("requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE)
        ),
        max_concurrent=_int(f"{dotted}.max_concurrent", table.get("max_concurrent", DEFAULT_MAX_CONCURRENT)),
        max_response_bytes=_int(
            f"{dotted}.max_response_bytes",
            table.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
            maximum=MAX_RESPONSE_CEILING,
        ),
        timeout=float(timeout),
        max_redirects=redirects,
    )


def parse_http_grants(plugins: Mapping[str, _HasHttp], secrets: Mapping[str, object]) -> dict[str, HttpGrant]:
    """Every plugin's grant (plugins without a ``[plugins.NAME.http]`` table have none)."""
    grants = {}
    for name, plugin in plugins.items():
        grant = parse_http_grant(name, plugin.http, secrets)
        if grant is not None:
            grants[name] = grant
    return grants
