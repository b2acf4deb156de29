"""The live dashboard: a page served by ``rosey run`` showing every plugin and adapter, with
15-minute plots, live logs and start/stop/restart buttons.

One tick every :data:`TICK_SECONDS` on the server, whoever watches: the status is read once,
one row per plugin is added to the 15-minute :class:`~bot.rosey.web.history.History`, and, only
when a browser is connected, one ``tick`` event is encoded once and queued for every client.
A new client gets the history first (one event per plugin, the loop yielding between them),
then the latest tick, then each new one: no client ever polls.

Endpoints (methods and who may call them; every request must name 127.0.0.1 or localhost with
the port in its ``Host``, see :mod:`bot.rosey.web.auth`):

=====================================  ======  ==============================================
``/``                                  GET     the page (open)
``/static/...``                        GET     its script, styles and vendored uPlot (open)
``/api/status``                        GET     the latest tick as JSON (open: what /metrics says)
``/api/events``                        GET     the SSE stream: hello, history..., tick... (open)
``/api/plugins/{name}/logs``           GET     recent output (JSON), ``?follow=1``: SSE (token)
``/api/plugins/{name}/{action}``       POST    start, stop, restart (token)
=====================================  ======  ==============================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.rosey.errors import PluginNotFound, PluginStartError
from bot.rosey.supervision.status import PluginStatus, RoseyStatus
from bot.rosey.web.auth import Refusal, operator_refusal
from bot.rosey.web.events import Broadcast, OutputFollowers, Subscription, line_dict, sse
from bot.rosey.web.health import readiness
from bot.rosey.web.history import WINDOW_SECONDS, CommandRates, CommandWindow, History
from bot.rosey.web.sources import ACTIONS, WebSources

__all__ = ["STATIC_DIR", "TICK_SECONDS", "Dashboard"]

logger = logging.getLogger(__name__)

TICK_SECONDS = 2.0
STATIC_DIR = Path(__file__).parent / "static"
LOG_LINES_DEFAULT = 200
LOG_LINES_MAX = 1000
KEEPALIVE_SECONDS = 15.0
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # a reverse proxy in front must not hold events back
}
NO_RATES = CommandRates(per_minute=0.0, error_rate=None, p50_ms=None, p95_ms=None)


def _row(plugin: PluginStatus, rates: CommandRates, host: str) -> dict[str, Any]:
    """One line of the table (the units are in the names)."""
    return {
        "name": plugin.name,
        "kind": plugin.kind,
        "state": plugin.state.value,
        "pid": plugin.pid,
        "host": plugin.host or host,  # s-spread: a remote plugin's row names its host
        "restarts": plugin.restarts,
        "last_exit": plugin.last_exit,
        "reason": plugin.reason,
        "uptime_seconds": plugin.uptime_seconds if plugin.pid is not None else None,
        "cpu_percent": plugin.cpu_percent,
        "memory_mb": plugin.memory_mb,
        "commands_per_minute": rates.per_minute,
        "error_rate": rates.error_rate,
        "p50_ms": rates.p50_ms,
        "p95_ms": rates.p95_ms,
        "nats_denials": plugin.denied_by_nats or 0,
        "sandbox": plugin.sandbox,
        "launcher": plugin.launcher,
    }


class Dashboard:
    """The dashboard's state and routes, on top of the same :class:`WebSources` as ``/metrics``."""

    def __init__(
        self,
        sources: WebSources,
        *,
        interval: float = TICK_SECONDS,
        window: float = WINDOW_SECONDS,
        hostname: str | None = None,
    ) -> None:
        self.sources = sources
        self.interval = interval
        self.window = window
        self.host = hostname or socket.gethostname()
        self.history = History(interval=interval, window=window)
        self.commands = CommandWindow(interval=interval)
        self.broadcast = Broadcast()
        self.followers = OutputFollowers()
        self.seq = 0  # ticks so far
        self.last_tick_ms = 0.0  # what the last tick cost the loop (for benchmarks)
        self._status: RoseyStatus | None = None
        self._tick_t = 0.0
        self._points: dict[str, tuple[float | None, ...]] = {}
        self._rates: dict[str, CommandRates] = {}
        self._message: bytes | None = None  # the latest tick, encoded once
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ wiring

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self._index),
            web.static("/static", STATIC_DIR, show_index=False, follow_symlinks=False),
            web.get("/api/status", self._status_json),
            web.get("/api/events", self._events),
            web.get("/api/plugins/{name}/logs", self._logs),
            web.post("/api/plugins/{name}/{action}", self._action),
        ]

    def install(self, app: web.Application) -> None:
        """Tick while ``app`` serves; end the streams when it shuts down (so that it does not wait
        for them), and follow plugins' output for the log view."""
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        if self.sources.output is not None:
            self.sources.output.listen(self.followers.listener)

    async def _on_startup(self, app: web.Application) -> None:
        self.start()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.stop()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rosey-dashboard")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.broadcast.close()
        self.followers.close()

    # ------------------------------------------------------------------ the tick

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                self.tick()
            except Exception:  # a bug here must not end the dashboard for the rest of the run
                logger.exception("web: dashboard tick failed")
            next_at = max(next_at + self.interval, loop.time())
            await asyncio.sleep(next_at - loop.time())

    def tick(self) -> None:
        """Read everything once, keep one history row, send one event to every client."""
        started = time.perf_counter()
        now = round(time.time(), 3)
        status = self.sources.status()
        if self.sources.commands is not None:
            self.commands.add(now, self.sources.commands())
        latency = self.commands.tick_latency()
        points: dict[str, tuple[float | None, ...]] = {}
        for plugin in status.plugins:
            p50, p95 = latency.get(plugin.name, (None, None))
            points[plugin.name] = (plugin.cpu_percent, plugin.memory_mb, p50, p95)
        self.history.add(now, points)
        self._status, self._tick_t, self._points = status, now, points
        self._rates = self.commands.rates()
        self.seq += 1
        self._message = None
        if len(self.broadcast):
            self.broadcast.publish(self.message())
        self.last_tick_ms = (time.perf_counter() - started) * 1000

    def payload(self) -> dict[str, Any]:
        """The latest tick: the table and this tick's plot points (the ``tick`` event's data)."""
        status = self._status if self._status is not None else self.sources.status()
        nats = self.sources.nats_connected()
        verdict = readiness(status, nats_connected=nats, started=self.sources.started())
        return {
            "seq": self.seq,
            "t": self._tick_t or round(time.time(), 3),
            "interval": self.interval,
            "host": self.host,
            "rosey": {
                "pid": status.pid,
                "uptime_seconds": status.uptime_seconds,
                "sandbox_mode": status.sandbox_mode,
                "launcher": status.launcher.kind,
                "nats_connected": nats,
                "ready": verdict.ready,
                "reasons": list(verdict.reasons),
            },
            "plugins": [_row(p, self._rates.get(p.name, NO_RATES), self.host) for p in status.plugins],
            "points": {name: list(values) for name, values in self._points.items()},
        }

    def message(self) -> bytes:
        if self._message is None:
            self._message = sse("tick", self.payload(), event_id=self.seq)
        return self._message

    # ------------------------------------------------------------------ open endpoints

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def _status_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.payload(), headers={"Cache-Control": "no-store"})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """``hello`` (interval, window, the history's times), one ``history`` per plugin, the
        latest ``tick``, then every tick as it happens."""
        subscription = self.broadcast.subscribe()
        frozen = self.history.copy()  # with the subscription, in one step: no tick lost or doubled
        latest = self.message() if self.seq else None
        response = web.StreamResponse(headers=SSE_HEADERS)
        try:
            await response.prepare(request)
            hello = {"interval": self.interval, "window": self.window, "host": self.host, "t": frozen.times()}
            await response.write(sse("hello", hello))
            for name in frozen.plugins():
                await response.write(sse("history", {"name": name, **frozen.series(name)}))
                await asyncio.sleep(0)  # 100 plugins' history is ~100 events: let the loop breathe
            if latest is not None:
                await response.write(latest)
            await self._pump(response, subscription)
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            self.broadcast.unsubscribe(subscription)
        return response

    @staticmethod
    async def _pump(response: web.StreamResponse, subscription: Subscription) -> None:
        while True:
            message = await subscription.get()
            if not message:
                return
            await response.write(message)

    # ------------------------------------------------------------------ operator endpoints

    def _refusal(self, request: web.Request) -> Refusal | None:
        return operator_refusal(request, self.sources.operator_token)

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal.response()
        output = self.sources.output
        if output is None:
            return web.json_response({"error": "this bot has no plugin output to show"}, status=404)
        name = request.match_info["name"]
        try:
            count = max(1, min(int(request.query.get("lines", LOG_LINES_DEFAULT)), LOG_LINES_MAX))
        except ValueError:
            return web.json_response({"error": "lines must be a whole number"}, status=400)
        follow = request.query.get("follow", "0") in ("1", "true")
        try:
            recent = output.recent(name, count)
        except PluginNotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        if not follow:
            return web.json_response({"lines": [line_dict(line) for line in recent]})
        subscription = self.followers.follow(name)  # right after reading the buffer: no gap
        response = web.StreamResponse(headers=SSE_HEADERS)
        try:
            await response.prepare(request)
            for line in recent:
                await response.write(sse("line", line_dict(line)))
            await response.write(sse("live", {"plugin": name}))
            while True:
                try:
                    message = await asyncio.wait_for(subscription.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    # A quiet plugin: a comment line, so that a view that went away is noticed
                    # (the write fails) and its follower removed, instead of waiting for a line.
                    await response.write(b": keepalive\n\n")
                    continue
                if not message:
                    break
                if subscription.dropped:
                    dropped, subscription.dropped = subscription.dropped, 0
                    await response.write(sse("dropped", {"lines": dropped}))
                await response.write(message)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.followers.unfollow(name, subscription)
        return response

    async def _action(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal.response()
        action, name = request.match_info["action"], request.match_info["name"]
        if action not in ACTIONS:
            return web.json_response({"error": f"unknown action (one of {', '.join(ACTIONS)})"}, status=404)
        control = self.sources.control
        if control is None:
            return web.json_response({"error": "this bot cannot be controlled over HTTP"}, status=404)
        try:
            status = await control(action, name)
        except PluginNotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except PluginStartError as exc:
            logger.info("web: %s of plugin '%s' from the dashboard failed", action, name)
            return web.json_response({"error": str(exc)}, status=409)
        logger.info("web: %s of plugin '%s' from the dashboard", action, name)
        return web.json_response({"plugin": _row(status, self._rates.get(name, NO_RATES), self.host)})
