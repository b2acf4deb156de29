"""TLS on the hub's leaf port (s-spread, issue 16): `[hub] leaf_tls_cert/leaf_tls_key` on the hub,
`[host] ca` on the host. A host that trusts the hub's CA connects; one whose CA did not sign the
hub's certificate is refused: it never becomes connected on the hub, and its plugins stay
unreachable from there."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import rosey, start_run
from tests.hosts.conftest import HUB_TOML, Cluster, Host, host_toml, stop_cluster

pytestmark = pytest.mark.timeout(120)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=20)


def make_ca(directory: Path, name: str) -> None:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN={name}", cwd=directory,
    )  # fmt: skip


def make_pki(directory: Path) -> None:
    """A CA, the hub's certificate for 127.0.0.1 signed by it, and another CA that signed nothing."""
    if shutil.which("openssl") is None:
        pytest.skip("TLS test needs the openssl command (not installed here)")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    make_ca(directory, "ca")
    make_ca(directory, "other_ca")
    _openssl("req", *ec, "-keyout", "hub.key", "-out", "hub.csr", "-subj", "/CN=hub", cwd=directory)
    (directory / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "hub.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "hub.pem", "-days", "2", "-extfile", "ext", cwd=directory,
    )  # fmt: skip


async def start_tls_cluster(tmp_path: Path, host_ca: str) -> Cluster:
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    hub_dir, host_dir = tmp_path / "hub", tmp_path / "host"
    hub_dir.mkdir()
    host_dir.mkdir()
    tls = f'[hub]\nleaf_tls_cert = "{pki / "hub.pem"}"\nleaf_tls_key = "{pki / "hub.key"}"\n'
    (hub_dir / "rosey.toml").write_text(HUB_TOML.replace("[hub]\n", tls))
    hub = await start_run(hub_dir)
    state = hub_dir / ".rosey" / "hosts"
    shutil.copy(state / "b.credentials", host_dir / "b.credentials")
    (host_dir / "b.credentials").chmod(0o600)
    text = host_toml((state / "leaf_url").read_text().strip())
    text = text.replace(
        'credentials = "b.credentials"\n', f'credentials = "b.credentials"\nca = "{pki / host_ca}"\n'
    )
    (host_dir / "rosey.toml").write_text(text)
    host = Host(host_dir)
    try:
        await host.start()
    except BaseException:
        hub.proc.kill()
        await hub.proc.wait()
        raise
    return Cluster(hub, host)


async def test_a_host_that_trusts_the_hubs_ca_connects_over_tls(tmp_path: Path) -> None:
    cluster = await start_tls_cluster(tmp_path, "ca.pem")
    try:
        await cluster.wait_host_label("far_echo", "b", timeout=30)
        code, out, err = await rosey("send", "far_echo", "over", "tls", cwd=cluster.hub.workdir)
        assert code == 0 and "far: over tls" in out, err
        # The hub's nats-server offers only TLS on the leaf port.
        config = next((cluster.hub.workdir / ".rosey").rglob("nats-server.conf"), None)
        if config is not None:
            assert "cert_file" in config.read_text()
    finally:
        await stop_cluster(cluster)


async def test_a_host_whose_ca_did_not_sign_the_hubs_certificate_is_refused(tmp_path: Path) -> None:
    cluster = await start_tls_cluster(tmp_path, "other_ca.pem")
    try:
        # The host redials every second; each attempt fails its TLS handshake, which the host logs.
        # After two of them (and heartbeats every second meanwhile), look at the hub.
        async with asyncio.timeout(30):
            while True:
                if cluster.host.log().count("TLS handshake failed") >= 2:
                    break
                await asyncio.sleep(0.2)
        assert "certificate signed by unknown authority" in cluster.host.log()
        row = (await cluster.rows())["far_echo"]
        assert row["host"] == "b (waiting)", row
        code, out, err = await rosey("send", "far_echo", "hi", cwd=cluster.hub.workdir, timeout=15)
        assert code != 0 and "is on host 'b', which is unreachable" in out + err
    finally:
        await stop_cluster(cluster)
