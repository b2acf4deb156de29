"""HTTPS with the connection pinned to the checked address: the certificate is still verified for
the name (SNI and the Host header carry it), never for the address."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.rosey.errors import GatewayError
from bot.rosey.gateway_config import parse_http_grant
from bot.rosey.services.gateway import HttpGateway
from bot.rosey.services.gateway_audit import AuditLog
from tests.gateway.http_server import LoopbackServer, start_server

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=20)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[LoopbackServer, Path]]:
    """A server with a certificate for ``good.test`` only, signed by a CA made for the test."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Test CA",
        cwd=tmp_path,
    )
    _openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=good.test", cwd=tmp_path)
    (tmp_path / "ext").write_text("subjectAltName=DNS:good.test\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
        cwd=tmp_path,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    server = start_server(tls=context)
    try:
        yield server, tmp_path / "ca.pem"
    finally:
        server.close()


async def test_the_certificate_is_checked_for_the_name(tls_server: tuple[LoopbackServer, Path]) -> None:
    server, ca = tls_server
    resolved: list[str] = []

    async def loopback(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    table = {
        "allow": [
            {"url": f"https://good.test:{server.port}/ok/", "allow_private": True},
            {"url": f"https://evil.test:{server.port}/ok/", "allow_private": True},  # same address
        ]
    }
    grant = parse_http_grant("weather", table, {})
    assert grant is not None
    gateway = HttpGateway(
        None,  # type: ignore[arg-type]
        {"weather": grant},
        {},
        audit=AuditLog(),
        resolver=loopback,
        ssl_context=ssl.create_default_context(cafile=str(ca)),
    )
    try:
        reply = await gateway.handle(
            "weather", {"method": "GET", "url": f"https://good.test:{server.port}/ok/echo"}
        )
        assert reply["status"] == 200
        assert server.seen[-1].headers["Host"] == f"good.test:{server.port}"
        # Another name on the same address: its own pool, its own handshake, and the server's
        # certificate is not for it.
        with pytest.raises(GatewayError) as failed:
            await gateway.handle(
                "weather", {"method": "GET", "url": f"https://evil.test:{server.port}/ok/echo"}
            )
        assert failed.value.reason == "connect" and "CERTIFICATE_VERIFY_FAILED" in str(failed.value)  # type: ignore[attr-defined]
        assert len(server.seen) == 1 and resolved == ["good.test", "evil.test"]
    finally:
        await gateway.stop()
