"""A plugin flooding the bus, through the real RoseyApp as an operator runs it, under both launchers.

NATS has no per-user message-rate limit. Rosey reads the embedded server's own per-connection
counters (``/connz``) and stops a plugin that sends more than its ``max_publish_rate`` messages
or ``max_publish_bytes_rate`` bytes per second, with a reason starting "flood"; the verdict is
read from the supervisor, never from the plugin. Meanwhile the canary answers every command and
is never restarted: the core's liveness pings and control requests travel on connections of
their own, so they never wait behind traffic a plugin caused.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from bot.rosey.app import RoseyApp
from bot.rosey.broker.traffic import TrafficMonitor
from bot.rosey.core.subjects import Subjects
from bot.rosey.services.router import OutcomeKind
from bot.rosey.supervision.status import PluginState
from tests.security.conftest import FIXTURES, Rosey, StartRosey, TomlValue

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(90)]

FLOOD = str(FIXTURES / "flood_plugin.py")
# A path, not an import: other tests check that discovery never imports plugin code.
ECHO = str(Path(__file__).resolve().parents[2] / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py")


def monitor(rosey: Rosey) -> TrafficMonitor:
    assert rosey.app.traffic is not None, rosey.app.status().nats.flood_detection
    return rosey.app.traffic


async def stopped_for_flood(app: RoseyApp, name: str, timeout: float = 20.0) -> str:
    """Wait (on the supervisor's state changes) until ``name`` was killed for flooding; its last exit."""
    assert app.supervisor is not None
    plugin = await app.supervisor.wait_for_state(
        name, lambda p: (p.last_exit or "").startswith("flood"), timeout
    )
    assert plugin.last_exit is not None
    return plugin.last_exit


@pytest.mark.parametrize(
    ("attack", "limit", "verdict"),
    [
        # Its own events, result and error subjects, and a denied one, small messages, from three
        # connections with its own credentials: one plugin's count however it is split.
        (("mixed", "100"), {"max_publish_rate": 5_000}, "msgs/s > limit 5,000 msgs/s"),
        # Its own events near the server's max_payload: few messages, many bytes.
        (("events", "60000"), {"max_publish_bytes_rate": 5_000_000}, "MB/s > limit 5.0 MB/s"),
        # Subscriptions of its own to every chat event: each chat line becomes thousands of copies.
        (("subscribe", "700"), {}, "subscriptions > limit 1,000"),
    ],
    ids=["many-small", "few-large", "fan-out"],
)
async def test_a_flooding_plugin_is_stopped_for_flood_and_the_canary_never_notices(
    start_rosey: StartRosey, launcher: str, attack: tuple[str, str], limit: dict[str, TomlValue], verdict: str
) -> None:
    # Limits lower than the defaults (100,000 msgs/s, 50 MB/s), which one flooding process beats
    # several times over on an idle machine: a flooder starved of CPU on a loaded one beats these.
    rosey = await start_rosey({"flood": {"path": FLOOD, **limit}, "canary": {}}, launcher=launcher)
    assert rosey.app.status().nats.flood_detection == "on"
    traffic = rosey.traffic()
    assert (await rosey.command("flood", "connections", 3)).ok
    assert (await rosey.command("flood", *attack)).ok

    last_exit = await stopped_for_flood(rosey.app, "flood")
    assert verdict in last_exit, last_exit
    assert rosey.row("flood")["last_exit"] == last_exit  # what `rosey status` shows

    await traffic.assert_all_answered()
    canary = rosey.row("canary")
    assert (canary["state"], canary["restarts"], canary["last_exit"]) == ("running", 0, None)


async def test_pings_and_control_do_not_wait_behind_a_flood_the_core_reads(
    start_rosey: StartRosey, launcher: str
) -> None:
    """A plugin allowed to publish chat events (as an adapter is) floods them: the core's router
    reads every one. With limits too high to stop it, the watchdog's pings to the canary and the
    CLI's control requests still get their answers in time."""
    rosey = await start_rosey(
        {
            "chatty": {
                "path": FLOOD,
                "publish": ["rosey.events.message"],
                "max_publish_rate": 100_000_000,
                "max_publish_bytes_rate": 100_000_000_000,
            },
            "canary": {},
        },
        launcher=launcher,
    )
    app = rosey.app
    assert app.watchdog is not None and app.watchdog.bus is not None
    traffic = rosey.traffic()
    assert (await rosey.command("chatty", "chat", 100)).ok

    # The flood is on, as the server counts it (a whole window of it).
    async with asyncio.timeout(20):
        while (rate := (await monitor(rosey).wait_for_sample()).get("chatty")) is None or (
            rate.msgs_per_second < 10_000
        ):
            pass

    ping_timeout = app.watchdog.config.ping_timeout
    for _ in range(5):
        started = time.monotonic()
        pong = await app.watchdog.bus.request(
            Subjects.control("canary", "ping"), {}, "security-test", timeout=ping_timeout
        )
        assert pong.event_type == "pong"
        status = await rosey.core.request(Subjects.supervisor("status"), {}, "security-test", timeout=2.0)
        assert status.data["ok"] is True
        assert time.monotonic() - started < 2.0
        assert (await rosey.command("canary", "direct")).kind is OutcomeKind.RESULT

    await traffic.assert_all_answered()
    canary = rosey.row("canary")
    assert (canary["state"], canary["restarts"], canary["last_exit"]) == ("running", 0, None)
    assert app.supervisor is not None and app.supervisor.get("chatty").state is PluginState.RUNNING


async def test_a_busy_legitimate_plugin_is_not_stopped(start_rosey: StartRosey, launcher: str) -> None:
    """The echo example under as many commands as the core can send (100 in flight, the bench's
    load) for several windows of the flood detector: it is never stopped."""
    rosey = await start_rosey({"echo": {"path": ECHO}, "canary": {}}, launcher=launcher)
    traffic = rosey.traffic()
    stop = asyncio.Event()
    failures: list[str] = []

    async def load() -> None:
        while not stop.is_set():
            outcome = await rosey.router.execute("echo", ["hello", "world"], timeout=10.0)
            if not outcome.ok:
                failures.append(outcome.message)

    workers = [asyncio.create_task(load()) for _ in range(100)]
    try:
        peak = 0.0
        for _ in range(12):  # reads every 0.5 s: three 2-second windows of full load at least
            rates = await monitor(rosey).wait_for_sample()
            if "echo" in rates:
                peak = max(peak, rates["echo"].msgs_per_second)
    finally:
        stop.set()
        await asyncio.gather(*workers)

    assert not failures, failures[:3]
    assert peak > 1_000, f"the load did not reach echo: {peak:.0f} msgs/s"
    echo = rosey.row("echo")
    assert (echo["state"], echo["restarts"], echo["last_exit"]) == ("running", 0, None)
    await traffic.assert_all_answered()


async def test_status_says_when_flood_detection_is_off(start_rosey: StartRosey) -> None:
    rosey = await start_rosey({"canary": {}}, nats={"monitor": False})
    assert rosey.app.traffic is None and rosey.app.status().nats.monitor_url is None
    assert (rosey.app.status().nats.flood_detection or "").startswith("off: [nats] monitor = false")
    assert (await rosey.command("canary", "hi")).ok


async def test_plugins_cannot_reach_the_servers_monitoring_port(
    start_rosey: StartRosey, launcher: str
) -> None:
    """The counters flood detection reads are on 127.0.0.1, where the sandbox lets a plugin reach
    the NATS client port alone: the server answers no request of the plugin's."""
    rosey = await start_rosey({"flood": {"path": FLOOD}, "canary": {}}, launcher=launcher)
    monitor_url = rosey.app.status().nats.monitor_url
    assert monitor_url is not None and monitor_url.startswith("http://127.0.0.1:")
    port = monitor_url.rsplit(":", 1)[1]

    attempt = await rosey.command("flood", "monitor", port)
    assert (attempt.data["outcome"], attempt.data["errno"]) == ("denied", "EACCES"), attempt.data
    assert (await requests_served(monitor_url, "/subsz")) == 0  # the server's count, not the plugin's
    await asyncio.wait_for(_get(monitor_url, "/subsz"), 5)  # positive control: the core is answered
    assert (await requests_served(monitor_url, "/subsz")) == 1


async def _get(monitor_url: str, path: str) -> bytes:
    host, port = monitor_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    body = await reader.read(-1)
    writer.close()
    await writer.wait_closed()
    return body.partition(b"\r\n\r\n")[2]


async def requests_served(monitor_url: str, path: str) -> int:
    varz = json.loads(await _get(monitor_url, "/varz"))
    return int(varz.get("http_req_stats", {}).get(path, 0))
