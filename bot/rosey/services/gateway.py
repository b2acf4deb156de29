"""The HTTP gateway: plugins' HTTP requests, made by the host under the operator's grants.

A plugin asks on ``rosey.services.http.<plugin>.request`` (NATS lets only that plugin publish
there, so the subject says who asks) and gets one reply: the response, or a typed error
(:class:`GatewayRefused` naming the rule and the check, :class:`GatewayRateLimited` with
``retry_after``, :class:`GatewayError` with a ``reason``). Every request, refused or not, is
recorded in the audit log (:mod:`.gateway_audit`).

One request, in order:

1. the URL in canonical form (:func:`parse_target`) must match a rule of the plugin's grant:
   scheme, host, port, path prefix, then method;
2. ``requests_per_minute`` (a sliding minute) and ``max_concurrent``;
3. the host is resolved once and every address checked (:mod:`.gateway_addresses`); the
   connection goes to the checked address: the URL sent carries it, the ``Host`` header and
   TLS's SNI (httpx's ``sni_hostname`` extension, so the certificate is checked against the
   name) carry the name. Each rule has its own connection pool, so a kept-alive connection is
   only ever reused for the host (and certificate) it was opened for;
4. the rule's secret, read now from its source, is injected where the rule says; the plugin's
   own headers of that name (and Host, Content-Length, hop-by-hop headers) are dropped;
5. redirects are followed here, each hop checked as in 1 and 3 against the same grant; a
   secret goes only to hops whose rule names it, and a hop whose URL carries a secret its rule
   does not name is refused;
6. the body is streamed and cut at ``max_response_bytes`` (the gateway asks for
   ``identity`` encoding, and inflates gzip/deflate itself with the same cap);
7. every form of every secret of the grant (as is, URL-encoded, JSON-escaped, base64 in basic
   auth) is replaced by ``[REDACTED]`` in the status line's headers, the body and the URL
   before anything reaches the plugin, the audit log or a log line.

httpx runs with ``trust_env=False`` (no proxy variables, no ``.netrc``), no cookie jar and
HTTP/1.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import ssl
import time
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

import httpx

from bot.rosey.config import RoseyConfig
from bot.rosey.core.event_bus import EventBus
from bot.rosey.errors import GatewayError, GatewayRateLimited, GatewayRefused, RoseyError
from bot.rosey.gateway_config import HttpGrant, Target, UrlRule, parse_http_grants, parse_target
from bot.rosey.services.gateway_addresses import Resolver, resolve, why_refused
from bot.rosey.services.gateway_audit import AuditLog, AuditRecord, audit_path
from bot.rosey.services.gateway_policy import (
    CROSS_ORIGIN_DROPPED,
    REDIRECTS,
    SERVICE,
    Hop,
    MinuteWindow,
    Redactor,
    SecretSource,
    body_cap,
    failed,
    inject_secret,
    match_rule,
    plugin_headers,
    refused,
)
from bot.rosey.services.plugin_requests import ConcurrentPluginRequestService

__all__ = ["SERVICE", "HttpGateway", "gateway_for"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- the service


class HttpGateway:
    """Serves ``rosey.services.http.<plugin>.request`` for the plugins in ``grants``."""

    def __init__(
        self,
        bus: EventBus,
        grants: Mapping[str, HttpGrant],
        secrets: Mapping[str, SecretSource],
        *,
        audit: AuditLog | None = None,
        resolver: Resolver = resolve,
        ssl_context: ssl.SSLContext | None = None,  # default: certifi's CA bundle
        source: str = "rosey-gateway",
    ) -> None:
        # httpcore's debug trace prints every response's headers, and a server may echo a secret
        # there: its debug lines never reach Rosey's logs, whatever the log level.
        logging.getLogger("httpcore").setLevel(logging.INFO)
        self.grants = dict(grants)
        self.secrets = dict(secrets)
        self.audit = audit or AuditLog()
        self.resolver = resolver
        self._bus = bus
        self._body_cap = body_cap(1024 * 1024)  # nats-server's default; start() reads the real one
        # Each request in its own task: one slow remote server must not hold up the next; each
        # plugin's share is bounded by its max_concurrent, checked first thing in the handler.
        self._service = ConcurrentPluginRequestService(bus, SERVICE, {"request": self.handle}, source=source)
        self._windows = {name: MinuteWindow(g.requests_per_minute) for name, g in self.grants.items()}
        self._transports: dict[tuple[str, str], httpx.AsyncHTTPTransport] = {}
        self._ssl = ssl_context

    async def start(self) -> None:
        # The body travels base64-encoded in one reply, beside the headers.
        self._body_cap = body_cap(self._bus.client.max_payload)
        self.audit.open()
        await self._service.start()

    async def stop(self) -> None:
        await self._service.stop()
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            with contextlib.suppress(Exception):
                await transport.aclose()
        self.audit.close()

    def status(self) -> dict[str, dict[str, int]]:
        return self.audit.snapshot()

    # ------------------------------------------------------------------ one request

    async def handle(self, plugin: str, data: Mapping[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        counters = self.audit.counter(plugin)
        counters.requests += 1
        method = str(data.get("method", "")).upper()[:16] or "?"
        record: dict[str, Any] = {"plugin": plugin, "method": method, "host": "?", "path": "?"}
        redactor = Redactor([])
        try:
            grant = self.grants.get(plugin)
            if grant is None:
                raise refused(
                    f"plugin {plugin!r} has no HTTP grant ([plugins.{plugin}.http] in rosey.toml)",
                    check="no_grant",
                )
            redactor = self._redactor(grant)
            try:
                target = parse_target(data.get("url"))
            except GatewayRefused as exc:
                raise refused(f"URL refused: {exc}", check=str(exc.details["check"])) from None
            record.update(host=target.netloc, path=redactor.text(target.path))
            rule = match_rule(grant, target, method)
            hop = Hop(method, target, plugin_headers(data.get("headers")), self._body(data))
            timeout = self._timeout(grant, data.get("timeout"))
            if counters.in_flight >= grant.max_concurrent:
                raise GatewayRateLimited(
                    f"{grant.max_concurrent} requests already in flight (max_concurrent)",
                    service=SERVICE,
                    retry_after=1.0,
                    limit="max_concurrent",
                )
            wait = self._windows[plugin].take(time.monotonic())
            if wait is not None:
                raise GatewayRateLimited(
                    f"{grant.requests_per_minute} requests per minute used up; retry after {wait:g} s",
                    service=SERVICE,
                    retry_after=wait,
                    limit="requests_per_minute",
                )
            counters.in_flight += 1
            counters.bytes_out += len(hop.body)
            try:
                async with asyncio.timeout(timeout):
                    reply = await self._exchange(grant, rule, hop, redactor, timeout, record)
            except TimeoutError:
                raise failed(
                    f"no complete response within {timeout:g} s", reason="timeout", timeout=timeout
                ) from None
            finally:
                counters.in_flight -= 1
        except GatewayRefused as exc:
            counters.refused += 1
            self._record(record, started, refused_by=str(exc.details.get("check", "refused")))
            rule_key = exc.details.get("rule")
            raise refused(
                redactor.text(str(exc)),
                check=str(exc.details.get("check")),
                rule=rule_key if isinstance(rule_key, str) else None,
            ) from None
        except GatewayRateLimited as exc:
            counters.limited += 1
            self._record(record, started, refused_by=str(exc.details.get("limit")))
            raise
        except GatewayError as exc:
            counters.failed += 1
            self._record(record, started, refused_by=str(exc.details.get("reason", "error")))
            raise GatewayError(redactor.text(str(exc)), service=SERVICE, **exc.details) from None
        except Exception as exc:
            # A bug, not a verdict: the plugin still gets an answer, and the log gets the type
            # only (a message or a traceback's text could quote a secret).
            counters.failed += 1
            self._record(record, started, refused_by="internal")
            logger.error("gateway: request of plugin %s failed: %s", plugin, type(exc).__name__)
            raise failed("the gateway failed on this request (see rosey's log)", reason="internal") from None
        counters.completed += 1
        counters.bytes_in += reply["size"]
        self._record(record, started, status=reply["status"], size=reply["size"])
        return reply

    def _record(
        self,
        record: dict[str, Any],
        started: float,
        *,
        refused_by: str | None = None,
        status: int | None = None,
        size: int = 0,
    ) -> None:
        self.audit.add(
            AuditRecord(
                ts=time.time(),
                ms=round((time.monotonic() - started) * 1000, 2),
                plugin=record["plugin"],
                method=record["method"],
                host=record["host"],
                path=record["path"],
                status=status,
                bytes=size,
                redirects=record.get("redirects", 0),
                refused_by=refused_by,
            )
        )

    def _redactor(self, grant: HttpGrant, *, only: str | None = None) -> Redactor:
        """Redaction of every secret of the grant (or secret ``only``), and of each as its rules send it."""
        values = []
        for rule in grant.rules:
            if rule.secret is None or rule.inject is None or only not in (None, rule.secret):
                continue
            with contextlib.suppress(RoseyError):  # unreadable: it cannot be sent either
                secret = self.secrets[rule.secret].read()
                values.append(secret)
                if rule.inject.kind == "header":
                    values.append(rule.inject.render(secret))
                elif rule.inject.kind == "basic":
                    credentials = f"{rule.inject.name}:{secret}" if rule.inject.name else secret
                    values.append(base64.b64encode(credentials.encode()).decode())
        return Redactor(values)

    @staticmethod
    def _body(data: Mapping[str, Any]) -> bytes:
        encoded = data.get("body_b64")
        if encoded is None:
            return b""
        try:
            return base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            raise failed("body_b64 is not base64", reason="bad_request") from None

    @staticmethod
    def _timeout(grant: HttpGrant, asked: object) -> float:
        if asked is None:
            return grant.timeout
        if isinstance(asked, bool) or not isinstance(asked, (int, float)) or not asked > 0:
            raise failed(f"timeout must be a positive number of seconds, got {asked!r}", reason="bad_request")
        return min(float(asked), grant.timeout)

    async def _exchange(
        self,
        grant: HttpGrant,
        rule: UrlRule,
        hop: Hop,
        redactor: Redactor,
        timeout: float,
        record: dict[str, Any],
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for redirects in range(grant.max_redirects + 1):
            address = await self._address(hop.target, rule)
            secret = self._secret(rule)
            target, headers = inject_secret(hop, rule, secret)
            response = await self._send(grant, rule, hop.method, target, address, headers, hop.body, deadline)
            location = response.headers.get("location")
            if response.status_code not in REDIRECTS or location is None:
                try:
                    body, size, inflated = await self._read(
                        response, min(grant.max_response_bytes, self._body_cap)
                    )
                finally:
                    await response.aclose()
                dropped = ("content-length", "content-encoding") if inflated else ("content-length",)
                headers_out = [
                    [redactor.text(k), redactor.text(v)]
                    for k, v in response.headers.multi_items()
                    if k.lower() not in dropped
                ]
                return {
                    "status": response.status_code,
                    "headers": headers_out,
                    "body_b64": base64.b64encode(redactor.data(body)).decode(),
                    "url": redactor.text(hop.target.url()),
                    "redirects": redirects,
                    "size": size,
                }
            await response.aclose()
            if redirects == grant.max_redirects:
                break
            hop, rule = self._follow(grant, hop, response.status_code, location, redactor)
            record["redirects"] = redirects + 1
        raise failed(f"more than {grant.max_redirects} redirects", reason="too_many_redirects")

    def _follow(
        self, grant: HttpGrant, hop: Hop, status: int, location: str, redactor: Redactor
    ) -> tuple[Hop, UrlRule]:
        """The next hop of a redirect, checked against the grant as a request of its own."""
        try:
            target = parse_target(urljoin(hop.target.url(), location))
        except (GatewayRefused, ValueError) as exc:
            check = exc.details["check"] if isinstance(exc, GatewayRefused) else "url"
            raise refused(f"redirect refused: {exc}", check=f"redirect:{check}") from None
        method, body = hop.method, hop.body
        if status == 303 or (status in (301, 302) and method == "POST"):
            method, body = ("HEAD" if method == "HEAD" else "GET"), b""
        try:
            rule = match_rule(grant, target, method)
        except GatewayRefused as exc:
            rule_key = exc.details.get("rule")
            raise refused(
                f"redirect to {target.origin}{target.path} refused: {exc}",
                check=f"redirect:{exc.details.get('check')}",
                rule=rule_key if isinstance(rule_key, str) else None,
            ) from None
        if redactor.found_in(target.url()):
            # A server that copied an injected secret into its Location: the next hop may have it
            # only if its own rule binds that very secret.
            for name in grant.secrets - {rule.secret}:
                if self._redactor(grant, only=name).found_in(target.url()):
                    raise refused(
                        f"redirect to {target.origin} would carry secret {name!r} to a host it is not "
                        "bound to",
                        check="redirect:secret_binding",
                        rule=rule.key,
                    )
        headers = hop.headers
        if (target.scheme, target.host, target.port) != (hop.target.scheme, hop.target.host, hop.target.port):
            headers = [(k, v) for k, v in headers if k.lower() not in CROSS_ORIGIN_DROPPED]
        if not body:
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
        return Hop(method, target, headers, body), rule

    async def _address(self, target: Target, rule: UrlRule) -> str:
        """The one address this hop connects to, resolved once and checked."""
        literal = target.ip
        if literal is not None:
            addresses = [literal]
        else:
            try:
                found = await self.resolver(target.host, target.port)
            except OSError as exc:
                raise failed(f"cannot resolve {target.host}: {exc.strerror or exc}", reason="dns") from None
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
            if not addresses:
                raise failed(f"{target.host} has no address", reason="dns")
        for address in addresses:
            why = why_refused(address, allow_private=rule.allow_private)
            if why is not None:
                hint = "" if rule.allow_private else " (a rule may say allow_private = true)"
                raise refused(
                    f"{target.host} resolves to {address}, {why}; refused{hint}",
                    check="private_address",
                    rule=rule.key,
                )
        return str(addresses[0])

    def _secret(self, rule: UrlRule) -> str | None:
        if rule.secret is None:
            return None
        source = self.secrets.get(rule.secret)
        if source is None:
            raise failed(f"{rule.key}: secret {rule.secret!r} is not configured", reason="secret_unavailable")
        try:
            return source.read()
        except RoseyError:
            # The message names the variable or the file, never a value; the plugin needs less.
            logger.warning("secret %s of %s cannot be read", rule.secret, rule.key)
            raise failed(
                f"secret {rule.secret!r} is unavailable on the host", reason="secret_unavailable"
            ) from None

    def _transport(self, plugin: str, rule: UrlRule, grant: HttpGrant) -> httpx.AsyncHTTPTransport:
        key = (plugin, rule.key)
        transport = self._transports.get(key)
        if transport is None:
            if rule.target.scheme == "https" and self._ssl is None:
                import certifi

                self._ssl = ssl.create_default_context(cafile=certifi.where())
            transport = httpx.AsyncHTTPTransport(
                verify=self._ssl if self._ssl is not None else True,
                trust_env=False,
                http1=True,
                http2=False,
                retries=0,
                limits=httpx.Limits(
                    max_connections=grant.max_concurrent,
                    max_keepalive_connections=grant.max_concurrent,
                    keepalive_expiry=30.0,
                ),
            )
            self._transports[key] = transport
        return transport

    async def _send(
        self,
        grant: HttpGrant,
        rule: UrlRule,
        method: str,
        target: Target,
        address: str,
        headers: list[tuple[str, str]],
        body: bytes,
        deadline: float,
    ) -> httpx.Response:
        host = f"[{address}]" if ":" in address else address
        url = f"{target.scheme}://{host}:{target.port}{target.path}" + (
            f"?{target.query}" if target.query else ""
        )
        left = max(0.001, deadline - time.monotonic())
        request = httpx.Request(
            method,
            url,
            headers=[("Host", target.netloc), ("Accept-Encoding", "identity"), *headers],
            content=body or None,
            extensions={
                "timeout": {"connect": left, "read": left, "write": left, "pool": left},
                "sni_hostname": target.host,
            },
        )
        try:
            return await self._transport(grant.plugin, rule, grant).handle_async_request(request)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.NetworkError as exc:  # connect, read, write: the OS's words, no request content
            raise failed(f"{target.origin}: {type(exc).__name__}: {exc}", reason="connect") from None
        except httpx.HTTPError as exc:  # others may quote a header, i.e. a secret: only the type
            raise failed(f"{target.origin}: {type(exc).__name__}", reason="connect") from None

    async def _read(self, response: httpx.Response, cap: int) -> tuple[bytes, int, bool]:
        """The body, decoded, at most ``cap`` bytes: past it the transfer stops and fails."""
        too_large = failed(
            f"the response is larger than max_response_bytes ({cap} bytes); it was cut off",
            reason="max_response_bytes",
            limit=cap,
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap and not response.headers.get("content-encoding"):
            raise too_large
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
            raise failed(f"unsupported content-encoding {encoding!r}", reason="content_encoding")
        inflate = None if encoding in ("identity", "") else zlib.decompressobj(47)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_raw():
                data = inflate.decompress(chunk, cap + 1 - size) if inflate is not None else chunk
                size += len(data)
                if size > cap:
                    raise too_large
                chunks.append(data)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.HTTPError as exc:
            raise failed(f"the response broke off: {type(exc).__name__}", reason="connect") from None
        except zlib.error:
            raise failed("the response is not valid gzip/deflate", reason="content_encoding") from None
        return b"".join(chunks), size, inflate is not None


def gateway_for(config: RoseyConfig, bus: EventBus) -> HttpGateway:
    """The gateway ``rosey run`` starts: the grants of ``config``, its audit log in the state dir."""
    grants = parse_http_grants(config.plugins, config.secrets)
    return HttpGateway(bus, grants, config.secrets, audit=AuditLog(audit_path(config.state_dir).parent))
