"""Weather: current weather from OpenWeatherMap, through Rosey's HTTP gateway.

Usage::

    !weather Paris
    !weather London,GB

The plugin has no network access and never sees the API key. It asks the gateway in
``rosey run`` (``self.http``), which checks the operator's grant, adds the key to the query
(``appid=...``) and makes the request. The operator's ``rosey.toml``::

    [secrets.weather_key]
    env = "OWM_API_KEY"            # or file = "/run/secrets/owm"

    [plugins.weather.http]
    allow = [{ url = "https://api.openweathermap.org/data/2.5/", methods = ["GET"],
               secret = "weather_key", inject = "query:appid" }]
    requests_per_minute = 60

The API's address can be changed with the plugin's environment variable ``WEATHER_API_URL``
(granted with ``env = ["WEATHER_API_URL"]`` in ``[plugins.weather]``; the grant's ``url`` must
match it), e.g. for a stand-in of the API in tests.

What it shows plugin authors:

* ``await self.http.get(url, params=...)`` and :class:`HttpResponse` (``status``, ``ok``,
  ``json()``): an HTTP error status is a response, not an exception;
* the gateway's typed errors, each turned into a sentence for the user: ``GatewayRefused`` (no
  grant), ``GatewayRateLimited`` (``retry_after``), ``GatewayError`` (``reason``: timeout,
  connect...);
* a small cache in storage with a ``ttl``: a city asked twice in 10 minutes costs one request
  (OpenWeatherMap updates its data about that often).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from bot.rosey.core.events import Event
from bot.rosey.errors import GatewayError, GatewayRateLimited, GatewayRefused, StorageError
from bot.rosey.plugins.permissions import Http, Requests, Storage
from bot.rosey.plugins.plugin_interface import Command, PluginInterface, run_plugin

DEFAULT_API_URL = "https://api.openweathermap.org/data/2.5/"
CACHE_SECONDS = 600
MAX_CITY_CHARS = 100

USAGE = "usage: !weather <city>[,<country code>] e.g. !weather Paris or !weather London,GB"


def describe(city: str, data: dict[str, Any]) -> str:
    """One chat line from OpenWeatherMap's current-weather JSON (``units=metric``)."""
    main = data.get("main") or {}
    sky = ", ".join(w.get("description", "") for w in data.get("weather") or [] if w.get("description"))
    temp = float(main["temp"])
    place = data.get("name") or city
    country = (data.get("sys") or {}).get("country")
    wind = (data.get("wind") or {}).get("speed")
    parts = [f"{temp:.1f} °C ({temp * 9 / 5 + 32:.0f} °F)"]
    if "feels_like" in main:
        parts.append(f"feels like {float(main['feels_like']):.0f} °C")
    if sky:
        parts.append(sky)
    if "humidity" in main:
        parts.append(f"humidity {main['humidity']}%")
    if wind is not None:
        parts.append(f"wind {float(wind):.1f} m/s")
    return f"🌤 {place}{', ' + country if country else ''}: " + ", ".join(parts)


class WeatherPlugin(PluginInterface):
    """``!weather <city>``: the current weather."""

    plugin_name = "weather"
    commands = (Command("weather", usage="<city...>", help="The current weather, e.g. !weather London,GB"),)
    # What the operator is asked to grant (it grants nothing by itself: see `rosey plugins review
    # weather`). The storage quota is for the 10-minute cache and fits in the default.
    requests = Requests(
        http=[
            Http(
                "https://api.openweathermap.org/data/2.5/", reason="current weather by city", methods=["GET"]
            )
        ],
        storage=Storage(max_bytes=1_000_000),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_url = os.environ.get("WEATHER_API_URL", DEFAULT_API_URL).rstrip("/") + "/"

    async def handle_command(self, event: Event) -> None:
        city = " ".join(event.data.get("args") or []).strip()
        if not city or city in ("help", "-h", "--help"):
            await self.publish_result({"message": USAGE}, event.correlation_id)
            return
        if len(city) > MAX_CITY_CHARS:
            await self.publish_error(f"that city name is too long; {USAGE}", event.correlation_id)
            return
        try:
            text = await self.weather(city)
        except UserError as exc:
            await self.publish_error(str(exc), event.correlation_id)
            return
        await self.publish_result({"message": text}, event.correlation_id)

    async def weather(self, city: str) -> str:
        cache_key = "cache." + hashlib.sha256(city.casefold().encode()).hexdigest()[:32]
        try:
            cached = await self.storage.get(cache_key)
        except StorageError:
            cached = None  # no cache today: still answer
        if cached:
            return str(cached)
        text = await self.fetch(city)
        try:
            await self.storage.put(cache_key, text, ttl=CACHE_SECONDS)
        except StorageError:
            pass
        return text

    async def fetch(self, city: str) -> str:
        try:
            # No appid here: the gateway adds it (and would replace one we sent).
            response = await self.http.get(
                self.api_url + "weather", params={"q": city, "units": "metric"}, timeout=10
            )
        except GatewayRefused as exc:
            # The details say why: check = no_grant, host, path, method... (also exc.check).
            raise UserError(
                f"weather lookups are not allowed by this bot's configuration ({exc.details.get('check')}); "
                "the operator needs a [plugins.weather.http] grant"
            ) from None
        except GatewayRateLimited as exc:
            wait = float(str(exc.details.get("retry_after", 60)))
            raise UserError(f"too many weather requests; try again in {wait:.0f} s") from None
        except GatewayError as exc:
            raise UserError(
                f"the weather service cannot be reached right now ({exc.details.get('reason')})"
            ) from None
        if response.status == 404:
            raise UserError(f"no city called '{city}' (try adding a country code: {city},GB)")
        if response.status == 401:
            raise UserError("the weather service rejected this bot's API key; tell the operator")
        if response.status == 429:
            raise UserError("the weather service is busy (its rate limit); try again in a minute")
        if not response.ok:
            raise UserError(f"the weather service answered {response.status}; try again later")
        try:
            return describe(city, response.json())
        except (ValueError, KeyError, TypeError):
            raise UserError("the weather service sent an answer this plugin cannot read") from None


class UserError(Exception):
    """Something to tell the user; the text is the answer in chat."""


if __name__ == "__main__":
    run_plugin(WeatherPlugin)
