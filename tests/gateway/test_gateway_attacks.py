"""A hostile plugin against the gateway, through the real RoseyApp, under both launchers.

The secrets live in the host (one in a file, one in an environment variable of ``rosey run``);
the plugin gets responses that the server filled with them. What is checked is outside the
plugin: what the HTTP server received, every message on the NATS server (a core connection
subscribed to ``>``), the audit log and the plugins' log files.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from bot.rosey.services.gateway_audit import audit_path, read_audit
from tests.gateway.http_server import LoopbackServer
from tests.security.conftest import Rosey, StartRosey

pytestmark = pytest.mark.timeout(120)

PLUGIN = Path(__file__).parent / "fixtures" / "gateway_plugin.py"
PATTERN = "ROSEYSECRET-[0-9a-f]{32}"
ENV_VARIABLE = "ROSEY_TEST_GATEWAY_KEY"


def new_secret() -> str:
    return f"ROSEYSECRET-{secrets.token_hex(16)}"


class Snoop:
    """Every message on the server, as the core identity sees it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    async def on_message(self, msg: Msg) -> None:
        self.messages.append((msg.subject, msg.data))
        self._changed.set()

    async def until(self, needle: bytes, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not any(needle in data for _, data in self.messages):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def carrying(self, value: str) -> list[str]:
        forms = {
            value.encode(),
            base64.b64encode(value.encode()),
            base64.b64encode(f"Bearer {value}".encode()),
        }
        return [subject for subject, data in self.messages if any(form in data for form in forms)]


@pytest.fixture
async def snoop_on() -> AsyncIterator[Any]:
    connections: list[nats.aio.client.Client] = []

    async def start(rosey: Rosey) -> Snoop:
        snoop = Snoop()
        nc = await nats.connect(
            rosey.runtime.nats_url, user=rosey.runtime.user, password=rosey.runtime.password
        )
        connections.append(nc)
        await nc.subscribe(">", cb=snoop.on_message)
        await nc.flush()
        return snoop

    yield start
    for nc in connections:
        await nc.close()


async def start(
    start_rosey: StartRosey, launcher: str, server: LoopbackServer, tmp_path: Path, file_secret: str
) -> Rosey:
    key_file = tmp_path / "owm.key"
    key_file.write_text(file_secret + "\n")
    key_file.chmod(0o600)
    base = f"http://127.0.0.1:{server.port}"
    bearer = "header:Authorization=Bearer {secret}"
    extra = f"""
[secrets.file_key]
file = "{key_file}"

[secrets.env_key]
env = "{ENV_VARIABLE}"

[plugins.gw.http]
allow = [
  {{ url = "{base}/ok/", allow_private = true, secret = "file_key", inject = "{bearer}" }},
  {{ url = "{base}/q/", allow_private = true, secret = "env_key", inject = "query:appid" }},
  {{ url = "http://localhost:{server.port}/private/" }},
]

[plugins.other.http]
allow = [{{ url = "{base}/other/", allow_private = true }}]
"""
    plugins = {"gw": {"path": str(PLUGIN)}, "other": {"path": str(PLUGIN)}}
    return await start_rosey(plugins, launcher=launcher, extra_toml=extra)


async def test_the_secrets_reach_the_server_and_never_the_plugin(
    start_rosey: StartRosey,
    launcher: str,
    http_server: LoopbackServer,
    tmp_path: Path,
    snoop_on: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    file_secret, env_secret = new_secret(), new_secret()
    monkeypatch.setenv(ENV_VARIABLE, env_secret)
    rosey = await start(start_rosey, launcher, http_server, tmp_path, file_secret)
    snoop: Snoop = await snoop_on(rosey)

    header = await rosey.attempt("gw", "get", http_server.url("/ok/echo"))
    query = await rosey.attempt("gw", "get", http_server.url("/q/echo?city=Paris"))
    # The server got both, where the grants say.
    got_header, got_query = http_server.seen
    assert got_header.headers["Authorization"] == f"Bearer {file_secret}"
    assert f"appid={env_secret}" in got_query.query and "city=Paris" in got_query.query
    # The plugin got the responses, each echoing the secret: redacted.
    for reply in (header, query):
        assert reply["outcome"] == "ok" and reply["status"] == 200, reply
        assert "[REDACTED]" in reply["text"]
    assert header["headers"]["x-echo-authorization"] == "[REDACTED]"  # the whole header value
    assert query["headers"]["x-echo-query"] == "city=Paris&appid=[REDACTED]"

    published = await rosey.attempt("gw", "publish")
    assert published["published"] == 2
    await snoop.until(b'"published"')  # its result follows its loot on the same connection

    dump = await rosey.attempt("gw", "dump", PATTERN, os.getpid(), tmp_path / "owm.key")
    assert dump["objects_scanned"] > 10_000, dump  # the search ran over the interpreter's objects
    assert dump["environ_matches"] == dump["proc_environ_matches"] == dump["object_matches"] == []
    memory = dump["memory"]  # /proc is not even mounted in the sandbox: denied, or no match
    assert memory["matches"] == [], memory
    assert memory["outcome"] == "denied" or memory["bytes"] > 1_000_000, memory
    for attempt in ("host_environ", "host_cmdline", "secret_file"):
        assert dump[attempt].get("matches", []) == [], dump[attempt]
    assert dump["secret_file"]["outcome"] == "denied", dump["secret_file"]
    assert dump["host_mem"]["outcome"] == "denied", dump["host_mem"]

    for secret in (file_secret, env_secret):
        # Not in anything that crossed the bus: requests, replies, results, published events.
        assert snoop.carrying(secret) == [], snoop.carrying(secret)
        assert secret not in json.dumps([header, query, published, dump])
        # Nor in the audit log, nor in any plugin's log file.
        assert secret not in audit_path(rosey.state_dir).read_text()
        for log in (rosey.state_dir / "logs").glob("*"):
            assert secret not in log.read_text(errors="replace"), log
    assert len(snoop.messages) > 8  # the snoop did see the traffic

    counters = rosey.app.status().to_dict()["gateway"]["gw"]
    assert counters["requests"] == counters["completed"] == 2 and counters["in_flight"] == 0


async def test_a_plugin_cannot_use_another_plugins_grant_nor_reach_private_addresses(
    start_rosey: StartRosey,
    launcher: str,
    http_server: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_VARIABLE, new_secret())
    rosey = await start(start_rosey, launcher, http_server, tmp_path, new_secret())
    other_url = http_server.url("/other/echo")

    # In its own name: no rule of its own allows /other/.
    direct = await rosey.attempt("gw", "get", other_url)
    assert direct["error_type"] == "GatewayRefused" and direct["details"]["check"] == "path", direct
    # In the other plugin's name: the NATS server drops the request; the gateway never sees it.
    forged = await rosey.attempt("gw", "impersonate", "other", other_url)
    assert forged["outcome"] == "no answer" and forged["violations"] >= 1, forged
    await rosey.server_log.until(lambda: bool(rosey.row("gw").get("denied_by_nats")))
    assert "/other/echo" not in http_server.paths()
    assert read_audit(rosey.state_dir, "other") == []
    # A host that resolves to loopback, under a rule without allow_private.
    private = await rosey.attempt("gw", "get", http_server.url("/private/echo", host="localhost"))
    assert private["error_type"] == "GatewayRefused" and private["details"]["check"] == "private_address"
    assert http_server.seen == []

    # The other plugin, in its own name, is served: the rule itself works.
    own = await rosey.attempt("other", "get", other_url)
    assert own["status"] == 200 and http_server.paths() == ["/other/echo"]
    assert [r.refused_by for r in read_audit(rosey.state_dir, "gw")] == ["path", "private_address"]
    assert [r.status for r in read_audit(rosey.state_dir, "other")] == [200]
