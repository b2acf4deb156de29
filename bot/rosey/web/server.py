"""The web server of ``rosey run``: an aiohttp app on 127.0.0.1, built from typed sources.

Why aiohttp: Rosey is asyncio throughout and aiohttp is the asyncio HTTP server that is already
installed with the chat platforms (aio-libs, maintained since 2013); it serves streaming
responses (server-sent events, for the dashboard to come) without a second framework or an ASGI
server, and runs inside the bot's own event loop.

:func:`build_web_app` is the app factory: the endpoints here, plus the routes a later surface
passes in (``extra_routes``). :class:`WebServer` binds the socket itself, so with port 0 the
kernel's choice is known without a bind-close-rebind race.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.rosey.web.auth import install_security
from bot.rosey.web.health import readiness
from bot.rosey.web.metrics import MetricsSnapshot, render_metrics_cooperatively
from bot.rosey.web.sources import WebSources
from bot.rosey.web_config import WEB_HOST, WebConfig

__all__ = ["SOURCES", "WebServer", "WebSources", "build_web_app"]

logger = logging.getLogger(__name__)


SOURCES = web.AppKey("rosey_sources", WebSources)


async def _healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.json_response({"alive": True})


async def _readyz(request: web.Request) -> web.Response:
    sources = request.app[SOURCES]
    verdict = readiness(sources.status(), nats_connected=sources.nats_connected(), started=sources.started())
    return web.json_response(verdict.to_dict(), status=200 if verdict.ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus' text format: the status is read now, on the loop; the text is made in ~1 ms
    steps between which the loop runs, so that a scrape of many plugins does not hold up chat
    commands (a thread did: it holds the GIL; see web/metrics.py)."""
    snapshot = MetricsSnapshot.take(request.app[SOURCES])
    body = await render_metrics_cooperatively(snapshot)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_web_app(
    sources: WebSources, *, extra_routes: Iterable[web.AbstractRouteDef] = ()
) -> web.Application:
    """The application: ``/healthz``, ``/readyz``, ``/metrics``, then ``extra_routes`` (e.g. a
    dashboard's, which reads ``app[SOURCES]`` like the endpoints here)."""
    app = web.Application()
    app[SOURCES] = sources
    install_security(app)  # Host check (DNS rebinding) and security headers on every answer
    app.add_routes(
        [
            web.get("/healthz", _healthz),
            web.get("/readyz", _readyz),
            web.get("/metrics", _metrics),
            *extra_routes,
        ]
    )
    return app


class WebServer:
    """Serves ``app`` on 127.0.0.1:``config.port`` until :meth:`stop`."""

    def __init__(self, config: WebConfig, app: web.Application) -> None:
        self.config = config
        self.app = app
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str | None:
        return None if self.port is None else f"http://{WEB_HOST}:{self.port}"

    async def start(self) -> str:
        """Bind and serve; returns the URL. OSError (port in use), naming the port and the key, is
        the caller's to report."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((WEB_HOST, self.config.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno, f"web: cannot listen on {WEB_HOST}:{self.config.port} ([web] port): {exc.strerror}"
            ) from exc
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.port = port = sock.getsockname()[1]
        url = f"http://{WEB_HOST}:{port}"
        logger.info("web: serving on %s", url)
        return url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
