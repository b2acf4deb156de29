"""A plugin learns nothing about files outside its grants, not even by ``stat()``.

Landlock decides what a plugin may open, not what it may ``stat()``: before the private
file-system view (``mount-ns``) a hostile plugin read the inode, size and times of the
operator's ``rosey.toml``, of ``runtime.json`` (the core's credentials), of the NATS
configuration (every plugin's password) and of other plugins' data, and the host's mount table.
Here the test reads each file's real ``st_ino``/``st_size`` itself and checks that what the
plugin reports is *not* them: the plugin gets ENOENT (or EACCES), never the metadata. The
plugin's own data dir still shows its real inode, and the canary answers throughout.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from bot.rosey.core.subjects import Subjects
from bot.rosey.plugins.sandbox import landlock
from tests.security.conftest import FIXTURES, StartRosey

SNOOPING = FIXTURES / "snooping_plugin.py"

pytestmark = [
    pytest.mark.no_nats,
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace needs root"),
    pytest.mark.skipif(landlock.abi_version()[0] < 1, reason="needs Landlock"),
]


async def test_stat_outside_the_grants_reveals_nothing(start_rosey: StartRosey, launcher: str) -> None:
    rosey = await start_rosey({"hostile": {"path": str(SNOOPING)}, "canary": {}}, launcher=launcher)
    state = rosey.state_dir
    diary = state / "data" / "canary" / "diary.txt"
    diary.write_text("the canary's own data")
    secrets = {
        "rosey.toml": rosey.workdir / "rosey.toml",
        "runtime.json (core credentials)": state / "runtime.json",
        "nats-server.conf (every password)": state / "nats" / "nats-server.conf",
        "another plugin's data dir": state / "data" / "canary",
        "a file in it": diary,
    }
    traffic = rosey.traffic()
    for what, path in secrets.items():
        real = path.stat()
        for attempt in ("stat", "lstat"):
            report = await rosey.attempt("hostile", attempt, path)
            learned = report.get("value") or {}
            assert (learned.get("st_ino"), learned.get("st_size")) != (real.st_ino, real.st_size), (
                what,
                report,
            )
            assert report["outcome"] != "allowed" and report["errno"] in ("ENOENT", "EACCES"), (what, report)
    # The directories on the way to its own data dir exist, as empty stand-ins, not the real ones.
    for directory in (state, state / "data"):
        report = await rosey.attempt("hostile", "stat", directory)
        assert report["outcome"] == "allowed" and report["value"]["st_ino"] != directory.stat().st_ino, report
        listing = await rosey.attempt("hostile", "list_dir", directory)
        assert listing.get("value") in (["data"], ["hostile"]) or listing["outcome"] != "allowed", listing
    mounts = await rosey.attempt("hostile", "mounts")
    assert mounts["outcome"] != "allowed", mounts  # the host's mount table: no /proc at all
    # No descriptor left over from before the switch leads back into the host's tree.
    assert (await rosey.attempt("hostile", "open_directories"))["value"] == []

    # What it may use is the real thing, at the same path.
    own = state / "data" / "hostile"
    report = await rosey.attempt("hostile", "stat", own)
    assert report["outcome"] == "allowed" and report["value"]["st_ino"] == own.stat().st_ino, report
    assert (await rosey.attempt("hostile", "read_file", SNOOPING))["outcome"] == "allowed"

    await traffic.assert_all_answered()
    for name in ("hostile", "canary"):
        assert rosey.row(name)["restarts"] == 0, rosey.row(name)
        pong = await rosey.core.request(Subjects.control(name, "ping"), {}, "security-test", timeout=5)
        assert "mount-ns" in pong.data["sandbox"].split(","), pong.data


async def test_a_plugin_with_a_network_grant_still_resolves_trusts_and_connects(
    start_rosey: StartRosey, launcher: str
) -> None:
    """What the view must keep: name resolution, the CA store, TCP to a host by name."""
    accepted = asyncio.Event()

    def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        grants = {"path": str(SNOOPING), "network": [f"localhost:{port}"]}
        rosey = await start_rosey({"hostile": grants, "canary": {}}, launcher=launcher)
        traffic = rosey.traffic()
        tls = await rosey.attempt("hostile", "tls")
        assert tls["outcome"] == "allowed" and tls["value"]["x509_ca"] > 0, tls
        resolved = await rosey.attempt("hostile", "resolve", "localhost")
        assert resolved["outcome"] == "allowed" and "127.0.0.1" in resolved["value"], resolved
        connected = await rosey.attempt("hostile", "tcp_connect", "localhost", port)
        assert connected["outcome"] == "allowed", connected
        await asyncio.wait_for(accepted.wait(), 5)
        await traffic.assert_all_answered()
        assert rosey.row("hostile")["restarts"] == 0 and rosey.row("canary")["restarts"] == 0
    finally:
        server.close()
        await server.wait_closed()
