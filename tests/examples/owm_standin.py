"""A loopback stand-in of OpenWeatherMap's current-weather API, written from its public docs.

``GET /data/2.5/weather?q={city name},{country code}&appid={API key}&units={standard|metric|imperial}``

* a missing or wrong ``appid``: 401 ``{"cod": 401, "message": "Invalid API key. ..."}``;
* no ``q``: 400 ``{"cod": "400", "message": "Nothing to geocode"}``;
* an unknown city: 404 ``{"cod": "404", "message": "city not found"}``;
* else 200 with the documented response fields (``coord``, ``weather``, ``main``, ``wind``,
  ``sys``, ``name``, ``cod``...), the temperatures in kelvin (``standard``, the default), °C
  (``metric``) or °F (``imperial``).

It records every request, so a test checks what really reached the API (the key included).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CITIES: dict[str, dict[str, Any]] = {
    "paris": {"name": "Paris", "country": "FR", "id": 2988507, "lat": 48.8534, "lon": 2.3488, "temp": 12.3},
    "london": {"name": "London", "country": "GB", "id": 2643743, "lat": 51.5085, "lon": -0.1257, "temp": 9.0},
    "oslo": {"name": "Oslo", "country": "NO", "id": 3143244, "lat": 59.9127, "lon": 10.7461, "temp": -4.5},
}


@dataclass
class OwmStandIn:
    api_key: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/data/2.5/"

    def start(self) -> OwmStandIn:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if path != "/data/2.5/weather":
            return 404, {"cod": "404", "message": "Internal error"}
        if query.get("appid", [""])[0] != self.api_key:
            return 401, {
                "cod": 401,
                "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 "
                "for more info.",
            }
        if not query.get("q"):
            return 400, {"cod": "400", "message": "Nothing to geocode"}
        city = CITIES.get(query["q"][0].split(",")[0].strip().casefold())
        if city is None:
            return 404, {"cod": "404", "message": "city not found"}
        units = query.get("units", ["standard"])[0]
        convert = {"metric": lambda c: c, "imperial": lambda c: c * 9 / 5 + 32}.get(
            units, lambda c: c + 273.15
        )
        temp = round(convert(city["temp"]), 2)
        return 200, {
            "coord": {"lon": city["lon"], "lat": city["lat"]},
            "weather": [{"id": 803, "main": "Clouds", "description": "broken clouds", "icon": "04d"}],
            "base": "stations",
            "main": {
                "temp": temp,
                "feels_like": round(temp - 1.2, 2),
                "temp_min": temp,
                "temp_max": temp,
                "pressure": 1014,
                "humidity": 81,
            },
            "visibility": 10000,
            "wind": {"speed": 4.12, "deg": 230},
            "clouds": {"all": 75},
            "dt": 1764672000,
            "sys": {
                "type": 2,
                "id": 2041230,
                "country": city["country"],
                "sunrise": 1764659000,
                "sunset": 1764690000,
            },
            "timezone": 3600,
            "id": city["id"],
            "name": city["name"],
            "cod": 200,
        }


def _handler(state: OwmStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            state.seen.append({"path": parts.path, "query": query, "headers": dict(self.headers.items())})
            status, body = state.answer(parts.path, query)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
