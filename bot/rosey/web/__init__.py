"""The operator's HTTP surface of ``rosey run``, on 127.0.0.1 only.

``sources`` (what the endpoints read, handed over by the app), ``health`` (what ``/readyz``
decides, a pure function of the status), ``metrics`` (a Prometheus collector reading the status
at scrape time) and ``server`` (the aiohttp app factory and the listening server). Later surfaces
(the dashboard) pass their routes to the app factory; they do not grow a second server.
"""

from bot.rosey.web.health import Readiness, readiness
from bot.rosey.web.server import WebServer, build_web_app
from bot.rosey.web.sources import WebSources

__all__ = ["Readiness", "WebServer", "WebSources", "build_web_app", "readiness"]
