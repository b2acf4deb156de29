"""The foreground life of ``rosey run``: start, say ready once, chat or wait, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.rosey.app import RoseyApp
from bot.rosey.config import RoseyConfig
from bot.rosey.core.event_bus import redact_url
from bot.rosey.errors import RoseyError
from bot.rosey.supervision.heap import freeze_startup_objects  # s-perf

__all__ = ["run_forever"]

logger = logging.getLogger(__name__)


def _rosey_command() -> str:
    """How the user can type this very command: ``rosey`` if that is on PATH, else its path."""
    me = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    on_path = shutil.which("rosey")
    if me is None or not me.name.startswith("rosey"):
        return "rosey"
    if on_path and Path(on_path).resolve() == me:
        return "rosey"
    with contextlib.suppress(ValueError):
        return str(me.relative_to(Path.cwd()))
    return str(me)


def _failure_line(app: RoseyApp, name: str, error: BaseException) -> str:
    """Why plugin ``name`` did not start, in one line: the load problem or the start failure."""
    plugin = app.supervisor.plugins.get(name) if app.supervisor is not None else None
    kind = plugin.spec.kind.value if plugin is not None else "plugin"
    if plugin is not None and plugin.spec.load_error is not None:
        return f"{kind} '{name}' failed to load: {plugin.spec.load_error}"
    if plugin is not None and plugin.failure_reason and not plugin.last_exit:
        return f"{kind} '{name}' {plugin.failure_reason}"
    if plugin is not None and plugin.last_exit:
        return f"{kind} '{name}' failed to start: {plugin.last_exit}"
    return str(error).strip().splitlines()[0]


async def run_forever(
    config: RoseyConfig,
    *,
    nats_url: str | None = None,
    chat: bool = True,
    json_logs: bool = False,
    companion: Callable[[RoseyApp], Awaitable[None]] | None = None,
) -> int:
    """Run until SIGINT/SIGTERM (or end of console input); return the process exit code.

    With ``json_logs`` what it says on stderr is a log record too (one JSON object per line).
    ``companion(app)`` (``rosey dev``'s watcher) runs from the ready line until the bot stops.
    """

    def say(text: str, level: int = logging.INFO) -> None:
        if json_logs:
            logger.log(level, "%s", text)
        else:
            print(text, file=sys.stderr, flush=True)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    app = RoseyApp(config, nats_url=nats_url, on_shutdown=stop.set)
    starting = asyncio.create_task(app.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not starting.done():  # Ctrl-C / SIGTERM while starting: give up the start, clean up
        say("Rosey stopping before it was ready...")
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, RoseyError, OSError):
            await starting
        await app.stop()
        return 0
    try:
        results = starting.result()
    except (RoseyError, OSError) as exc:
        say(f"rosey: could not start: {exc}", logging.ERROR)
        await app.stop()
        return 2
    # s-perf: what start-up built stays for good; full GC passes over it stalled the loop 50+ ms.
    freeze_startup_objects()
    adapters = list(app.catalog.adapter_configs)  # in the config's order
    plugins = {name: error for name, error in results.items() if name not in adapters}
    ready = [name for name, error in plugins.items() if error is None]
    failed = {name: _failure_line(app, name, error) for name, error in results.items() if error is not None}
    for line in failed.values():  # one line each; the plugin's traceback is in the log above, once
        say(f"rosey: {line}", logging.ERROR)
    example = ready[0] if ready else "NAME"
    prefix = config.chat.prefix
    console_off = any(a.type == "console" and not a.enabled for a in config.adapters.values())
    console = chat and sys.stdin.isatty() and not console_off
    try_it = f"run `{_rosey_command()} send {example} hello` in another terminal"
    if console:
        try_it = f"Type {prefix}{example} hello here, or {try_it}"
    else:
        try_it = try_it[0].upper() + try_it[1:]
    plugin_failures = [line for name, line in failed.items() if name not in adapters]
    failures = f"; {len(plugin_failures)} failed ({'; '.join(plugin_failures)})" if plugin_failures else ""
    platforms = ""
    if adapters:
        up = [name for name in adapters if results.get(name) is None]
        platforms = f"; adapters {len(up)}/{len(adapters)} running ({', '.join(up) or 'none'})"
    web = f"; web {app.web_url}" if app.web_url else ""
    print(
        f"Rosey ready: {len(ready)}/{len(plugins)} plugins running ({', '.join(ready) or 'none'}){failures}"
        f"{platforms} on NATS {redact_url(app.nats_url)}{web}. {try_it}; Ctrl-C stops.",
        flush=True,
    )

    chat_task: asyncio.Task[None] | None = None
    if console:
        from bot.rosey.adapters.console import ConsoleAdapter

        assert app.bus is not None
        adapter = ConsoleAdapter(app.bus, command_prefix=prefix)
        chat_task = asyncio.create_task(adapter.run())
        chat_task.add_done_callback(lambda _: stop.set())  # Ctrl-D ends the session too
    # --- companion (rosey dev): runs while the bot is up, cancelled before it stops
    companion_task: asyncio.Task[None] | None = None
    if companion is not None:
        companion_task = asyncio.ensure_future(companion(app))
        companion_task.add_done_callback(_companion_ended)
    # --- end companion
    try:
        await stop.wait()
    finally:
        say("Rosey stopping...")
        if companion_task is not None:
            companion_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await companion_task
        if chat_task is not None:
            chat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await chat_task
        await app.stop()
    return 0


def _companion_ended(task: asyncio.Future[None]) -> None:
    """A companion that dies of a bug says so (the bot itself keeps running)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("%s", exc, exc_info=exc)
