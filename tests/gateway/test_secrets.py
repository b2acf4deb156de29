"""Secrets: injected where the grant says, for the host they are bound to, and never handed back."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bot.rosey.errors import GatewayError, GatewayRefused
from bot.rosey.services.gateway_audit import audit_path, read_audit
from tests.gateway.conftest import MakeGateway
from tests.gateway.http_server import LoopbackServer

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

SECRET = "sk-Very/Secret+Value=42"


def leaked(reply: dict[str, Any]) -> bool:
    """Any form of the secret anywhere in what the plugin would get."""
    text = json.dumps(reply) + base64.b64decode(reply["body_b64"]).decode(errors="replace")
    forms = (
        SECRET,
        quote(SECRET, safe=""),
        json.dumps(SECRET)[1:-1],
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode(f"bot:{SECRET}".encode()).decode(),
    )
    return any(form in text for form in forms)


def secret_rule(server: LoopbackServer, inject: str, path: str = "/ok/") -> dict[str, Any]:
    return {"url": server.url(path), "allow_private": True, "secret": "key", "inject": inject}


@pytest.mark.parametrize(
    ("inject", "sent"),
    [
        (
            "header:Authorization=Bearer {secret}",
            lambda seen: seen.headers["Authorization"] == f"Bearer {SECRET}",
        ),
        ("header:X-Api-Key", lambda seen: seen.headers["X-Api-Key"] == SECRET),
        ("query:appid", lambda seen: f"appid={quote(SECRET, safe='')}" in seen.query.replace("%2F", "%2F")),
        (
            "basic:bot",
            lambda seen: (
                seen.headers["Authorization"]
                == "Basic " + base64.b64encode(f"bot:{SECRET}".encode()).decode()
            ),
        ),
    ],
)
async def test_the_secret_reaches_the_server_but_not_the_plugin(
    http_server: LoopbackServer,
    make_gateway: MakeGateway,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    inject: str,
    sent: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await make_gateway({"allow": [secret_rule(http_server, inject)]}, secrets={"key": SECRET})
    # The plugin's own attempt at the same header or parameter is replaced, not appended.
    reply = await gateway.handle(
        "weather",
        {
            "method": "GET",
            "url": http_server.url("/ok/echo?q=1&appid=mine"),
            "headers": [["Authorization", "mine"], ["X-Api-Key", "mine"]],
        },
    )
    seen = http_server.seen[-1]
    assert sent(seen), seen
    assert reply["status"] == 200
    assert not leaked(reply), reply
    assert "[REDACTED]" in base64.b64decode(reply["body_b64"]).decode()
    if inject.startswith("query"):
        assert seen.query.count("appid=") == 1 and seen.query.startswith("q=1&")
    # Nor in the audit log, in memory or on disk, nor in any log line.
    assert SECRET not in json.dumps([r.__dict__ for r in gateway.audit.records])
    assert gateway.audit.directory is not None
    assert SECRET not in (gateway.audit.directory / "audit.jsonl").read_text()
    assert SECRET not in caplog.text


async def test_a_secret_is_never_sent_to_a_hop_its_rule_does_not_bind(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    free_same_host = http_server.url("/free/echo")
    free_other_host = http_server.url("/free/echo", host="localhost")
    gateway = await make_gateway(
        {
            "allow": [
                secret_rule(http_server, "header:Authorization=Bearer {secret}"),
                {"url": http_server.url("/free/"), "allow_private": True},
                {"url": http_server.url("/free/", host="localhost"), "allow_private": True},
            ]
        },
        secrets={"key": SECRET},
    )
    for target in (free_same_host, free_other_host):
        http_server.seen.clear()
        reply = await gateway.handle(
            "weather", {"method": "GET", "url": http_server.url(f"/ok/redirect?to={quote(target)}")}
        )
        assert reply["status"] == 200 and reply["redirects"] == 1
        first, second = http_server.seen
        assert first.headers["Authorization"] == f"Bearer {SECRET}"
        assert "Authorization" not in second.headers and SECRET not in second.text()


async def test_a_redirect_that_would_carry_the_secret_elsewhere_is_refused(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    """A server that puts the query (with the injected key) into its redirect's Location."""
    keyed = {**secret_rule(http_server, "header:X-Key", "/keyed/"), "secret": "other"}
    keyed["url"] = http_server.url("/keyed/", host="localhost")
    gateway = await make_gateway(
        {
            "allow": [
                secret_rule(http_server, "query:appid"),
                {"url": http_server.url("/free/", host="localhost"), "allow_private": True},
                keyed,  # a host with a secret of its own, not this one
            ]
        },
        secrets={"key": SECRET, "other": "another-secret-value"},
    )
    for path in ("/free/echo", "/keyed/echo"):
        http_server.seen.clear()
        elsewhere = http_server.url(f"{path}?stolen={quote(SECRET, safe='')}", host="localhost")
        with pytest.raises(GatewayRefused) as refused:
            await gateway.handle(
                "weather",
                {"method": "GET", "url": http_server.url(f"/ok/redirect?to={quote(elsewhere, safe='')}")},
            )
        assert refused.value.check == "redirect:secret_binding"  # type: ignore[attr-defined]
        assert SECRET not in str(refused.value)
        assert http_server.paths() == ["/ok/redirect"]


async def test_an_unreadable_secret_fails_the_request_without_sending_it(
    http_server: LoopbackServer, make_gateway: MakeGateway, tmp_path: Path
) -> None:
    from bot.rosey.chat_config import SecretSource

    gateway = await make_gateway(
        {"allow": [secret_rule(http_server, "query:appid")]}, secrets={"key": SECRET}
    )
    gateway.secrets["key"] = SecretSource(key="secrets.key.file", file=tmp_path / "missing")
    with pytest.raises(GatewayError) as failed:
        await gateway.handle("weather", {"method": "GET", "url": http_server.url("/ok/echo")})
    assert failed.value.reason == "secret_unavailable"  # type: ignore[attr-defined]
    assert http_server.seen == []


def test_the_audit_file_is_read_back_by_plugin(tmp_path: Path) -> None:
    from bot.rosey.services.gateway_audit import AuditLog, AuditRecord

    log = AuditLog(audit_path(tmp_path).parent)
    log.open()
    for plugin in ("a", "b", "a"):
        log.add(AuditRecord(ts=0.0, plugin=plugin, method="GET", host="h", path="/", status=200))
    log.close()
    assert [r.plugin for r in read_audit(tmp_path)] == ["a", "b", "a"]
    assert [r.plugin for r in read_audit(tmp_path, "a", lines=1)] == ["a"]
    assert (audit_path(tmp_path).stat().st_mode & 0o777) == 0o600
