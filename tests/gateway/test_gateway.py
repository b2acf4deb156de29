"""The gateway's checks and limits against a real HTTP server on loopback.

Each test calls the handler the bus would call (``gateway.handle(plugin, request)``) and checks
both sides: what the plugin would get back, and what the server actually received.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from bot.rosey.errors import GatewayError, GatewayRateLimited, GatewayRefused
from bot.rosey.services.gateway import HttpGateway
from tests.gateway.conftest import MakeGateway
from tests.gateway.http_server import LoopbackServer

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

SECRET = "sk-Very/Secret+Value=42"


def rule(server: LoopbackServer, path: str = "/ok/", **extra: Any) -> dict[str, Any]:
    return {"url": server.url(path), "allow_private": True, **extra}


async def get(gateway: HttpGateway, url: str, method: str = "GET", **request: Any) -> dict[str, Any]:
    return await gateway.handle("weather", {"method": method, "url": url, **request})


def body(reply: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(reply["body_b64"]))


def audit(gateway: HttpGateway) -> list[dict[str, Any]]:
    return [vars(r) if not hasattr(r, "__dataclass_fields__") else r.__dict__ for r in gateway.audit.records]


async def test_an_allowed_request_goes_through_and_is_audited(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway({"allow": [rule(http_server, methods=["GET", "POST"])]})
    reply = await get(gateway, http_server.url("/ok/echo?q=Paris"))
    assert reply["status"] == 200 and reply["redirects"] == 0
    echoed = body(reply)
    assert echoed["path"] == "/ok/echo" and echoed["query"] == "q=Paris"
    assert echoed["headers"]["Host"] == f"127.0.0.1:{http_server.port}"
    data = base64.b64encode(b'{"a":1}').decode()
    reply = await get(gateway, http_server.url("/ok/echo"), "POST", body_b64=data, headers=[["X-Y", "z"]])
    assert body(reply)["body"] == '{"a":1}' and body(reply)["headers"]["X-Y"] == "z"
    records = list(gateway.audit.records)
    assert [(r.method, r.path, r.status, r.refused_by) for r in records] == [
        ("GET", "/ok/echo", 200, None),
        ("POST", "/ok/echo", 200, None),
    ]
    assert "Paris" not in json.dumps([r.__dict__ for r in records])  # never the query
    assert gateway.status()["weather"]["completed"] == 2


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("http://localhost:{port}/ok/echo", "host"),
        ("http://127.0.0.1:1/ok/echo", "port"),
        ("https://127.0.0.1:{port}/ok/echo", "scheme"),
        ("http://127.0.0.1:{port}/other/echo", "path"),
        ("http://127.0.0.1:{port}/okay", "path"),  # a prefix on segment boundaries only
        ("http://127.0.0.1:{port}/ok/../admin", "path"),
        ("http://127.0.0.1:{port}/ok/%2e%2E/admin", "path"),
        ("http://127.0.0.1:{port}/ok/.%2E/admin", "path"),
        ("http://127.0.0.1:{port}/ok%2f..%2fadmin", "path"),
        ("http://127.0.0.1:{port}/ok\\..\\admin", "url"),
        ("http://127.0.0.1:{port}@evil.example/ok/echo", "userinfo"),
        ("http://user:pw@127.0.0.1:{port}/ok/echo", "userinfo"),
        ("http://2130706433:{port}/ok/echo", "host"),
        ("http://0x7f.1:{port}/ok/echo", "host"),
        ("http://127.1:{port}/ok/echo", "host"),
        ("file:///etc/passwd", "scheme"),
        ("http://127.0.0.1:{port}/ok/echo\r\nX-Injected: 1", "url"),
    ],
)
async def test_what_no_rule_allows_is_refused_naming_the_check(
    http_server: LoopbackServer, make_gateway: MakeGateway, path: str, check: str
) -> None:
    gateway = await make_gateway({"allow": [rule(http_server)]})
    with pytest.raises(GatewayRefused) as refused:
        await get(gateway, path.format(port=http_server.port))
    assert refused.value.check == check  # type: ignore[attr-defined]
    assert http_server.seen == []
    assert gateway.audit.records[-1].refused_by == check


async def test_a_method_the_rule_does_not_list_is_refused_naming_the_rule(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway({"allow": [rule(http_server)]})
    with pytest.raises(GatewayRefused) as refused:
        await get(gateway, http_server.url("/ok/echo"), "DELETE")
    error = refused.value
    assert error.check == "method" and error.rule == "plugins.weather.http.allow[0]"  # type: ignore[attr-defined]
    assert "plugins.weather.http.allow[0]" in str(error) and "allows GET, not DELETE" in str(error)
    assert http_server.seen == []


async def test_an_international_host_matches_its_ascii_form(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway({"allow": [{"url": "https://bücher.example/api/"}]})
    assert gateway.grants["weather"].rules[0].target.host == "xn--bcher-kva.example"
    with pytest.raises(GatewayRefused) as refused:
        await get(gateway, "https://xn--bcher-kva.example.evil/api/x")
    assert refused.value.check == "host"  # type: ignore[attr-defined]


async def test_private_addresses_are_refused_after_resolution_unless_the_rule_allows_them(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway(
        {"allow": [{"url": http_server.url("/ok/")}, {"url": http_server.url("/ok/", host="localhost")}]}
    )
    for host in ("127.0.0.1", "localhost"):  # a literal, and a name that resolves to loopback
        with pytest.raises(GatewayRefused) as refused:
            await get(gateway, http_server.url("/ok/echo", host=host))
        assert refused.value.check == "private_address"  # type: ignore[attr-defined]
        assert "loopback" in str(refused.value) and "allow_private" in str(refused.value)
    assert http_server.seen == []


async def test_the_connection_goes_to_the_address_that_was_checked(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    """DNS rebinding: a resolver that answers a public address first, then loopback. The
    gateway asks once per hop and connects to what it checked: the loopback server never hears
    of it (the public address is unreachable here, so the request fails, as it should)."""
    answers = ["93.184.216.34", "127.0.0.1"]
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return [answers[min(len(calls) - 1, 1)]]

    gateway = await make_gateway(
        {"allow": [{"url": f"http://rebind.example:{http_server.port}/ok/"}], "timeout": 1.0},
        resolver=rebinding,
    )
    with pytest.raises(GatewayError) as failed:
        await get(gateway, f"http://rebind.example:{http_server.port}/ok/echo")
    assert failed.value.reason in ("connect", "timeout")  # type: ignore[attr-defined]
    assert calls == ["rebind.example"] and http_server.seen == []

    calls.clear()
    answers[:] = ["127.0.0.1", "10.1.2.3"]  # allowed private: still the first answer, and once
    gateway = await make_gateway(
        {"allow": [{"url": f"http://rebind.example:{http_server.port}/ok/", "allow_private": True}]},
        resolver=rebinding,
    )
    reply = await get(gateway, f"http://rebind.example:{http_server.port}/ok/echo")
    assert reply["status"] == 200 and calls == ["rebind.example"]
    assert body(reply)["headers"]["Host"] == f"rebind.example:{http_server.port}"


async def test_every_address_of_a_name_is_checked(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "169.254.169.254"]

    gateway = await make_gateway({"allow": [{"url": "http://mixed.example/"}]}, resolver=mixed)
    with pytest.raises(GatewayRefused) as refused:
        await get(gateway, "http://mixed.example/x")
    assert "metadata" in str(refused.value)


async def test_redirects_are_followed_only_to_allowed_urls(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway({"allow": [rule(http_server, "/ok/"), rule(http_server, "/also/")]})
    allowed = http_server.url("/also/echo")
    reply = await get(gateway, http_server.url(f"/ok/redirect?to={allowed}"))
    assert reply["status"] == 200 and reply["redirects"] == 1 and body(reply)["path"] == "/also/echo"
    assert http_server.paths() == ["/ok/redirect", "/also/echo"]

    for target, check in (
        (http_server.url("/admin/echo"), "redirect:path"),
        ("http://169.254.169.254/latest/meta-data/", "redirect:host"),
        (http_server.url("/ok/echo", host="localhost"), "redirect:host"),
    ):
        http_server.seen.clear()
        with pytest.raises(GatewayRefused) as refused:
            await get(gateway, http_server.url(f"/ok/redirect?to={target}"))
        assert refused.value.check == check  # type: ignore[attr-defined]
        assert http_server.paths() == ["/ok/redirect"]  # the refused hop never went out
    assert gateway.audit.records[-1].refused_by == "redirect:host"


async def test_a_redirect_loop_ends(http_server: LoopbackServer, make_gateway: MakeGateway) -> None:
    gateway = await make_gateway({"allow": [rule(http_server)], "max_redirects": 2})
    loop = http_server.url("/ok/redirect?to=/ok/redirect%3Fto%3D/ok/redirect%253Fto%253D/ok/redirect")
    with pytest.raises(GatewayError) as failed:
        await get(gateway, loop)
    assert failed.value.reason == "too_many_redirects"  # type: ignore[attr-defined]
    assert len(http_server.seen) == 3


async def test_a_response_over_the_cap_is_cut_while_streaming(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway({"allow": [rule(http_server)], "max_response_bytes": 100_000})
    reply = await get(gateway, http_server.url("/ok/big?n=100000"))
    assert len(base64.b64decode(reply["body_b64"])) == 100_000
    for url in (http_server.url("/ok/big?n=50000000"), http_server.url("/ok/gzip?n=50000000")):
        with pytest.raises(GatewayError) as failed:
            await get(gateway, url)
        error = failed.value
        assert type(error) is GatewayError and error.reason == "max_response_bytes"  # type: ignore[attr-defined]
        assert "larger than max_response_bytes (100000 bytes)" in str(error)
    assert gateway.status()["weather"]["failed"] == 2


async def test_gzip_is_inflated_for_the_plugin(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway({"allow": [rule(http_server)]})
    reply = await get(gateway, http_server.url("/ok/gzip?n=1000"))
    assert base64.b64decode(reply["body_b64"]) == b"\0" * 1000
    assert not any(k.lower() == "content-encoding" for k, _ in reply["headers"])


async def test_a_slow_server_times_out(http_server: LoopbackServer, make_gateway: MakeGateway) -> None:
    gateway = await make_gateway({"allow": [rule(http_server)], "timeout": 0.3})
    with pytest.raises(GatewayError) as failed:
        await get(gateway, http_server.url("/ok/slow"), timeout=5)  # the grant's timeout is the ceiling
    assert failed.value.reason == "timeout"  # type: ignore[attr-defined]
    assert gateway.audit.records[-1].refused_by == "timeout"


async def test_requests_per_minute(http_server: LoopbackServer, make_gateway: MakeGateway) -> None:
    gateway = await make_gateway({"allow": [rule(http_server)], "requests_per_minute": 2})
    for _ in range(2):
        await get(gateway, http_server.url("/ok/echo"))
    with pytest.raises(GatewayRateLimited) as limited:
        await get(gateway, http_server.url("/ok/echo"))
    error = limited.value
    assert 0 < error.retry_after <= 60 and error.limit == "requests_per_minute"  # type: ignore[attr-defined]
    assert len(http_server.seen) == 2
    assert gateway.status()["weather"]["limited"] == 1


async def test_concurrent_requests(http_server: LoopbackServer, make_gateway: MakeGateway) -> None:
    gateway = await make_gateway({"allow": [rule(http_server)], "max_concurrent": 1})
    slow = asyncio.create_task(get(gateway, http_server.url("/ok/slow")))
    await asyncio.wait_for(asyncio.to_thread(http_server.got_request.wait, 10), 10)
    with pytest.raises(GatewayRateLimited) as limited:
        await get(gateway, http_server.url("/ok/echo"))
    assert limited.value.limit == "max_concurrent"  # type: ignore[attr-defined]
    http_server.release()
    assert (await asyncio.wait_for(slow, 10))["status"] == 200
    assert (await get(gateway, http_server.url("/ok/echo")))["status"] == 200


async def test_a_plugin_without_a_grant_is_refused(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway({"allow": []})
    with pytest.raises(GatewayRefused) as refused:
        await gateway.handle("other", {"method": "GET", "url": "https://example.org/"})
    assert refused.value.check == "no_grant" and "[plugins.other.http]" in str(refused.value)  # type: ignore[attr-defined]


async def test_the_plugin_cannot_set_what_the_gateway_owns(
    http_server: LoopbackServer, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway({"allow": [rule(http_server)]})
    headers = [["Host", "internal.example"], ["Transfer-Encoding", "chunked"], ["Accept-Encoding", "br"]]
    echoed = body(await get(gateway, http_server.url("/ok/echo"), headers=headers))["headers"]
    assert echoed["Host"] == f"127.0.0.1:{http_server.port}" and echoed["Accept-Encoding"] == "identity"
    assert "Transfer-Encoding" not in echoed
    with pytest.raises(GatewayError) as failed:
        await get(gateway, http_server.url("/ok/echo"), headers=[["X-A", "b\r\nX-Injected: 1"]])
    assert failed.value.reason == "bad_request"  # type: ignore[attr-defined]
