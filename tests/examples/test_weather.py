"""The weather example through the real HTTP gateway, against a loopback stand-in of the
OpenWeatherMap API: the key reaches the API and never the plugin."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.plugins.plugin_runner import ProcessOptions
from bot.rosey.testing import OutcomeKind, PluginHarness
from tests.examples.conftest import EXAMPLES
from tests.examples.owm_standin import OwmStandIn

WEATHER = EXAMPLES / "weather_plugin.py"


@pytest.fixture
def owm() -> Iterator[OwmStandIn]:
    stand_in = OwmStandIn(api_key="owm-" + secrets.token_hex(16)).start()
    try:
        yield stand_in
    finally:
        stand_in.close()


def grant(owm: OwmStandIn, **limits: Any) -> dict[str, Any]:
    """What the operator writes in [plugins.weather.http], for the stand-in (on loopback, hence
    allow_private)."""
    rule = {
        "url": owm.base_url,
        "methods": ["GET"],
        "secret": "weather_key",
        "inject": "query:appid",
        "allow_private": True,
    }
    return {"allow": [rule], **limits}


async def start_weather(harness: PluginHarness, owm: OwmStandIn) -> int:
    options = ProcessOptions(extra_env={"WEATHER_API_URL": owm.base_url})
    runner = await harness.start_plugin("weather", WEATHER, options=options)
    assert runner.pid is not None
    return runner.pid


async def test_weather_through_the_gateway_and_the_key_stays_outside(
    harness: PluginHarness, owm: OwmStandIn
) -> None:
    await harness.allow_http("weather", grant(owm), secrets={"weather_key": owm.api_key})
    pid = await start_weather(harness, owm)
    on_the_bus: list[bytes] = []

    async def record(msg: Any) -> None:
        on_the_bus.append(msg.data)

    spy = await harness.bus.client.subscribe(">", cb=record)  # every message anyone sends
    reply = await harness.command("weather", ["Paris"])
    assert reply.ok, reply.message
    assert reply.message == (
        "🌤 Paris, FR: 12.3 °C (54 °F), feels like 11 °C, broken clouds, humidity 81%, wind 4.1 m/s"
    )
    # What the API got: the key (added by the gateway), the city, metric units.
    (request,) = owm.seen
    assert request["path"] == "/data/2.5/weather"
    assert request["query"] == {"q": ["Paris"], "units": ["metric"], "appid": [owm.api_key]}
    # What the plugin could know: neither its environment, nor its answer, nor anything on the bus.
    environ = await asyncio.to_thread(Path(f"/proc/{pid}/environ").read_bytes)
    assert owm.api_key.encode() not in environ
    assert owm.api_key not in repr(reply.data)
    await spy.unsubscribe()
    assert on_the_bus and not [m for m in on_the_bus if owm.api_key.encode() in m]

    # A second ask within 10 minutes comes from the plugin's storage cache: no second request.
    assert (await harness.command("weather", ["paris"])).message == reply.message
    assert len(owm.seen) == 1
    oslo = await harness.command("weather", ["Oslo,NO"])
    assert oslo.message.startswith("🌤 Oslo, NO: -4.5 °C (24 °F)")


async def test_unknown_city_and_usage(harness: PluginHarness, owm: OwmStandIn) -> None:
    await harness.allow_http("weather", grant(owm), secrets={"weather_key": owm.api_key})
    await start_weather(harness, owm)
    missing = await harness.command("weather", ["Atlantis"])
    assert missing.kind is OutcomeKind.ERROR
    assert missing.message == "⚠️ weather: no city called 'Atlantis' (try adding a country code: Atlantis,GB)"
    assert (await harness.command("weather")).message.startswith("usage: !weather <city")
    assert "too long" in (await harness.command("weather", ["x" * 101])).message


async def test_a_wrong_key_is_reported_not_leaked(harness: PluginHarness, owm: OwmStandIn) -> None:
    await harness.allow_http("weather", grant(owm), secrets={"weather_key": "not-the-key"})
    await start_weather(harness, owm)
    reply = await harness.command("weather", ["Paris"])
    assert reply.message == "⚠️ weather: the weather service rejected this bot's API key; tell the operator"
    assert owm.seen[0]["query"]["appid"] == ["not-the-key"]


async def test_without_a_grant_the_plugin_says_so(harness: PluginHarness, owm: OwmStandIn) -> None:
    await start_weather(harness, owm)
    reply = await harness.command("weather", ["Paris"])
    assert reply.kind is OutcomeKind.ERROR
    assert reply.message == (
        "⚠️ weather: weather lookups are not allowed by this bot's configuration (no_grant); "
        "the operator needs a [plugins.weather.http] grant"
    )
    assert owm.seen == []  # the gateway refused it: nothing reached the API


async def test_the_rate_limit_becomes_a_sentence(harness: PluginHarness, owm: OwmStandIn) -> None:
    await harness.allow_http(
        "weather", grant(owm, requests_per_minute=1), secrets={"weather_key": owm.api_key}
    )
    await start_weather(harness, owm)
    assert (await harness.command("weather", ["London"])).ok
    limited = await harness.command("weather", ["Oslo"])
    assert limited.kind is OutcomeKind.ERROR
    assert limited.message.startswith("⚠️ weather: too many weather requests; try again in ")
    assert len(owm.seen) == 1


async def test_no_network_needed_under_the_sandbox(harness: PluginHarness, owm: OwmStandIn) -> None:
    # Under rosey run's sandbox the plugin may connect to the NATS port only: the request is the
    # gateway's, made in the host.
    await harness.allow_http("weather", grant(owm), secrets={"weather_key": owm.api_key})
    options = ProcessOptions(extra_env={"WEATHER_API_URL": owm.base_url})
    await harness.start_plugin("weather", WEATHER, options=options, sandbox=True)
    assert (await harness.command("weather", ["Paris"])).message.startswith("🌤 Paris, FR: 12.3 °C")
    assert len(owm.seen) == 1
