"""/healthz and /readyz of a real `rosey run`, on 127.0.0.1 only, and no port with [web] off."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import psutil
import pytest

from tests.cli.conftest import rosey, start_run

from .conftest import FAILS_ONCE, get, web_url, write_plugin

pytestmark = pytest.mark.timeout(60)


def listening_ports(pid: int) -> set[tuple[str, int]]:
    return {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.Process(pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }


async def test_unready_while_a_plugin_is_failed_ready_after_rosey_start(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "echo")
    write_plugin(tmp_path / "plugins", "flaky", FAILS_ONCE)
    bot = await start_run(tmp_path)
    try:
        url = web_url(bot)
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        # Bound to loopback alone: the one listening socket of the bot's own process.
        assert listening_ports(bot.proc.pid) == {("127.0.0.1", port)}

        health = await get(f"{url}/healthz")
        assert health.status_code == 200 and health.json() == {"alive": True}

        unready = await get(f"{url}/readyz")
        assert unready.status_code == 503, unready.text
        body = unready.json()
        assert body["ready"] is False
        source = (tmp_path / "plugins" / "flaky.py").read_text().splitlines()
        line = next(n for n, text in enumerate(source, 1) if "first start fails on purpose" in text)
        assert body["reasons"] == [
            "plugin 'flaky' is failed: failed to start: RuntimeError: first start fails on purpose"
            f" (plugins/flaky.py:{line})"
        ], body

        code, _, err = await rosey("start", "flaky", cwd=tmp_path)
        assert code == 0, err
        ready = await get(f"{url}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"ready": True, "reasons": []}

        # Deliberately stopped is not unready: the operator asked for it.
        code, _, err = await rosey("stop", "echo", cwd=tmp_path)
        assert code == 0, err
        assert (await get(f"{url}/readyz")).status_code == 200
    finally:
        bot.proc.terminate()
        await bot.proc.wait()


async def test_web_disabled_opens_no_port(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "echo")
    (tmp_path / "rosey.toml").write_text("[web]\nenabled = false\n")
    bot = await start_run(tmp_path)
    try:
        assert "web" not in bot.ready_line, bot.ready_line
        runtime = json.loads((tmp_path / ".rosey" / "runtime.json").read_text())
        assert runtime["web_url"] is None
        assert listening_ports(bot.proc.pid) == set()
    finally:
        bot.proc.terminate()
        await bot.proc.wait()


async def test_a_configured_port_is_used(tmp_path: Path) -> None:
    # The kernel picks a port, we release it, then ask Rosey for it: a port free a moment ago.
    probe = free_port()
    write_plugin(tmp_path / "plugins", "echo")
    (tmp_path / "rosey.toml").write_text(f"[web]\nport = {probe}\n")
    bot = await start_run(tmp_path)
    try:
        assert web_url(bot) == f"http://127.0.0.1:{probe}"
        assert (await get(f"http://127.0.0.1:{probe}/healthz")).status_code == 200
    finally:
        bot.proc.terminate()
        await bot.proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_taken_port_stops_the_start_with_the_key_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "rosey.toml").write_text(f"[web]\nport = {port}\n")
        write_plugin(tmp_path / "plugins", "echo")
        code, out, err = await rosey("run", "--no-chat", cwd=tmp_path)
    assert code == 2, (out, err)
    assert f"could not start: [Errno 98] web: cannot listen on 127.0.0.1:{port} ([web] port)" in err, err
