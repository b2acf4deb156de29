"""One function per ``rosey`` command; each returns the process exit code.

Exit codes: 0 success; 1 the plugin answered with an error; 2 anything else went wrong
(timeout, unknown or stopped plugin, Rosey not running, bad configuration or arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import select
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bot.rosey.cli.client import connect, control
from bot.rosey.cli.log_format import JsonFormatter
from bot.rosey.cli.output import PrintableFormatter, print_json, print_line, print_text, table
from bot.rosey.config import RoseyConfig, load_config
from bot.rosey.core.event_bus import redact_url
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import CliError, ConfigError, NoResponders, NotRunning, RequestTimeout
from bot.rosey.hosts.status import (  # s-host, s-spread
    command_inbox_prefix,
    denial_lines,  # s-remote
    plugin_reasons,
    unreachable_reason,
)
from bot.rosey.plugin_logs import read_plugin_log
from bot.rosey.runtime import read_runtime
from bot.rosey.services.gateway_audit import gateway_log
from bot.rosey.services.router import CoreRouter, OutcomeKind, RouterConfig
from bot.rosey.supervision.status import PluginStatus, RoseyStatus, unavailable_reason
from bot.rosey.terminal import printable

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_PLUGIN_ERROR",
    "cmd_dashboard",
    "cmd_doctor",
    "cmd_lifecycle",
    "cmd_logs",
    "cmd_nats_config",
    "cmd_plugins_list",
    "cmd_run",
    "cmd_send",
    "cmd_shutdown",
    "cmd_status",
    "cmd_top",
    "setup_logging",
]

EXIT_OK, EXIT_PLUGIN_ERROR, EXIT_FAILURE = 0, 1, 2


def _config(args: argparse.Namespace) -> RoseyConfig:
    return load_config(args.config)


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr: for people (``text``, control characters escaped) or one JSON object per
    line (``json``, see :mod:`bot.rosey.cli.log_format`)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            PrintableFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])


def cmd_run(args: argparse.Namespace) -> int:
    from bot.rosey.cli.run import run_forever  # heavy imports only for `run`

    config = _config(args)
    setup_logging(args.log_level or config.log_level, args.log_format)
    companion = None
    if getattr(args, "watch", False):  # --- issue 16: rosey run --watch reloads a plugin on save
        from bot.rosey.cli.watch import watcher

        companion = watcher(config)
    return asyncio.run(
        run_forever(
            config,
            nats_url=args.nats_url,
            chat=not args.no_chat,
            json_logs=args.log_format == "json",
            companion=companion,
        )
    )


async def cmd_send(args: argparse.Namespace) -> int:
    config = _config(args)
    info = read_runtime(config.state_dir)
    # s-host: a plugin on another host answers only into that host's inbox on the hub (s-spread: a
    # plugin on several machines into its own)
    bus = await connect(info, inbox_prefix=command_inbox_prefix(config.cluster, args.name.lower()))
    try:
        known: list[str] | None = None
        reasons: dict[str, str | None] = {}
        with contextlib.suppress(NoResponders, RequestTimeout):
            status = await bus.request(  # names and states only: no history (s-thousand)
                Subjects.supervisor("status"), {"history": False}, "rosey-cli", timeout=5.0
            )
            plugins = RoseyStatus.from_dict(status.data).plugins
            known = [plugin.name for plugin in plugins]
            reasons = plugin_reasons(  # s-spread: several rows per plugin
                plugins, lambda p: unreachable_reason(p) or unavailable_reason(p)
            )
        router = CoreRouter(
            bus,
            RouterConfig(command_timeout=args.timeout or config.command_timeout),
            known_plugins=(lambda: known) if known is not None else None,
            why_unavailable=reasons.get,
            source="rosey-cli",
        )
        await router.start(chat=False)
        try:
            outcome = await router.execute(
                args.name.lower(), list(args.args), user="cli", channel="cli", timeout=args.timeout
            )
        finally:
            await router.stop()
    finally:
        await bus.disconnect()
    if args.json:
        print_json(
            {
                "kind": outcome.kind.value,
                "message": outcome.message,
                "data": outcome.data,
                "correlation_id": outcome.correlation_id,
                "elapsed_ms": round(outcome.elapsed * 1000, 3),
            }
        )
    else:
        print_text(outcome.message, error=not outcome.ok)
    if outcome.ok:
        return EXIT_OK
    return EXIT_PLUGIN_ERROR if outcome.kind in (OutcomeKind.ERROR, OutcomeKind.CRASHED) else EXIT_FAILURE


async def cmd_status(args: argparse.Namespace) -> int:
    # The table shows no history: only --json asks for it (s-thousand: 1,000 plugins' is large)
    data = await control(_config(args), "status", {} if args.json else {"history": False})
    if args.json:
        print_json(data)
        return EXIT_OK
    status = RoseyStatus.from_dict(data)
    columns = PluginStatus.COLUMNS
    if any(plugin.host for plugin in status.plugins):  # s-host: plugins on several machines
        columns = (columns[0], "host", *columns[1:])
    print(table([plugin.to_dict() for plugin in status.plugins], columns))
    sandboxes: dict[tuple[str, str], list[str]] = {}
    for plugin in status.plugins:
        if plugin.reason:
            print(f"{plugin.name}: {plugin.reason}")
        if plugin.not_granted:  # requested in its source, not granted in rosey.toml (issue 15)
            print(printable(f"{plugin.name}: not granted: {'; '.join(plugin.not_granted)}"))
        if plugin.sandbox_source is not None:
            sandboxes.setdefault((plugin.sandbox or "none", plugin.sandbox_source), []).append(plugin.name)
        if plugin.denied_by_nats:
            print(f"{plugin.name}: {plugin.denied_by_nats} publish/subscribe attempts denied by NATS")
    for (layers, source), names in sandboxes.items():
        # Says where the value comes from: never the plugin's own claim.
        print(f"sandbox {layers}: {', '.join(names)} ({PluginStatus.SANDBOX_SOURCES.get(source, source)})")
    for line in denial_lines(status.hosts):  # s-remote: what the hub's NATS refused each host
        print(line)
    kind = "embedded" if status.nats.embedded else "external"
    print(f"NATS {redact_url(status.nats.url)} ({kind}); rosey pid {status.pid}")
    if status.nats.flood_detection and status.nats.flood_detection != "on":
        print(f"flood detection {status.nats.flood_detection}")
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    """The running bot's dashboard URL; the operator token goes in the fragment (``#token=``),
    which browsers never send to the server, so it stays out of its logs and of proxies'."""
    info = read_runtime(_config(args).state_dir)
    if info.web_url is None:
        raise CliError(f"Rosey (pid {info.pid}) serves no web pages: [web] enabled = false in its rosey.toml")
    if args.no_token or not info.operator_token:
        print(f"{info.web_url}/")
    else:
        print(f"{info.web_url}/#token={info.operator_token}")
    return EXIT_OK


async def cmd_top(args: argparse.Namespace) -> int:
    from bot.rosey.cli.top import SortKey  # rich is imported by `top` alone
    from bot.rosey.cli.top_live import run_top

    return await run_top(_config(args), interval=args.interval, sort=SortKey(args.sort), once=args.once)


def cmd_plugins_list(args: argparse.Namespace) -> int:
    from bot.rosey.catalog import build_catalog
    from bot.rosey.cli.plugin_commands import print_commands  # issue 15

    config = _config(args)
    catalog = build_catalog(config)
    rows: list[dict[str, Any]] = [
        {
            "name": spec.name,
            "enabled": spec.enabled,
            "source": spec.source,
            "location": str(spec.path) if spec.path else spec.entry,
            "restart": spec.restart.value,
            "problem": spec.load_error,
        }
        for spec in catalog.specs
    ]
    # --- issue 15: each plugin's declared commands, read from its source
    prefix = config.chat.prefix
    for row in rows:
        declared = catalog.commands.get(str(row["name"]))
        row["commands"] = declared.as_dict(prefix) if declared is not None else []
    # --- end of issue 15
    if config.cluster.host is None:  # s-remote: a hub's plugins on hosts, as their hosts reported them
        from bot.rosey.hosts.declared import remote_plugin_rows

        rows += remote_plugin_rows(config.cluster, config.state_dir, prefix)
    if args.json:
        print_json({"plugins": rows, "problems": list(catalog.problems)})
    else:
        print(table(rows, ("name", "enabled", "source", "restart", "location")))
        for row in rows:
            if row["problem"]:
                print(f"{row['name']}: cannot run: {row['problem']}")
        print_commands(rows)  # issue 15
        for problem in catalog.problems:
            print(f"warning: {problem}", file=sys.stderr)
    return EXIT_OK


def cmd_lifecycle(action: str) -> Callable[[argparse.Namespace], Awaitable[int]]:
    async def command(args: argparse.Namespace) -> int:
        data = await control(_config(args), action, {"name": args.name}, timeout=60.0)
        plugin = PluginStatus.from_dict(data["plugin"])
        print(f"{plugin.name}: {plugin.state}" + (f" (pid {plugin.pid})" if plugin.pid else ""))
        return EXIT_OK

    return command


async def cmd_logs(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.gateway:  # the HTTP gateway's audit log, read from the state directory
        return gateway_log(config.state_dir, args.name, args.lines, follow=args.follow)
    if args.name is None:
        raise CliError("name a plugin (rosey logs NAME), or ask for the gateway's log (rosey logs --gateway)")
    try:
        data = await control(config, "logs", {"name": args.name, "lines": args.lines})
    except NotRunning:
        # The bot is not running: its plugins' output is still on disk.
        if args.follow:
            raise
        directory = config.state_dir / "logs"
        records = read_plugin_log(directory, args.name, args.lines)
        if not records:
            raise CliError(
                f"Rosey is not running here and has no logs of plugin '{args.name}' in {directory}"
            ) from None
        print(f"(Rosey is not running; the last lines of {directory / args.name}.log)", file=sys.stderr)
        data = {"lines": records}
    for line in data["lines"]:
        print_line(line)
    if not args.follow:
        return EXIT_OK
    info = read_runtime(config.state_dir)
    bus = await connect(info)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def on_line(event: Event) -> None:
        print_line(event.data)

    try:
        lease = await bus.request(
            Subjects.supervisor("follow"), {"name": args.name}, "rosey-cli", timeout=5.0
        )
        if not lease.data.get("ok"):
            raise CliError(str(lease.data.get("error")))
        await bus.subscribe(lease.data["subject"], on_line)
        renew_every = float(lease.data["lease_seconds"]) / 3
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), renew_every)
            if not stop.is_set():
                await bus.request(
                    Subjects.supervisor("follow"), {"name": args.name}, "rosey-cli", timeout=5.0
                )
    except (NoResponders, RequestTimeout) as exc:
        raise CliError(f"Rosey stopped answering: {exc}") from exc
    finally:
        await bus.disconnect()
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from bot.rosey.cli.doctor import doctor_report, format_report

    try:
        config: RoseyConfig | None = _config(args)
    except ConfigError as exc:  # the machine's facts are worth reporting all the same
        print(f"warning: {exc}", file=sys.stderr)
        config = None
    report = doctor_report(config)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return EXIT_OK if report.get("ok", True) else EXIT_FAILURE


def cmd_nats_config(args: argparse.Namespace) -> int:
    from bot.rosey.broker.identities import (
        CORE_USER,
        Credentials,
        adapter_permissions,
        adapter_user,
        password_variable,
        plugin_permissions,
        plugin_user,
        render_server_config,
    )
    from bot.rosey.catalog import build_catalog

    config = _config(args)
    catalog = build_catalog(config)
    users: dict[str, tuple[Credentials, dict[str, Any] | None]] = {
        "core": (Credentials(user=CORE_USER), None)
    }
    for spec in catalog.specs:
        plugin = catalog.configs[spec.name]
        users[spec.name] = (
            Credentials(user=plugin_user(spec.name)),
            plugin_permissions(spec.name, extra_publish=plugin.publish, extra_subscribe=plugin.subscribe),
        )
    for spec in catalog.adapters:
        users[spec.name] = (Credentials(user=adapter_user(spec.name)), adapter_permissions(spec.name))
    names = ", ".join(f"${password_variable(name)}" for name in users)
    print("# Authorization for your own nats-server, equivalent to what `rosey run` generates for its")
    print("# embedded server. Choose one password per identity and set them in the environment of")
    print(f"# BOTH nats-server and `rosey run`: {names}")
    print("# (nats-server refuses to start while one is unset). nats-server parses the values: use")
    print("# letters and digits, starting with a letter (e.g. pw$(openssl rand -hex 16)).")
    print("# Give rosey the core's in its URL:")
    print("#   rosey run --nats-url nats://rosey_core:$ROSEY_NATS_PASSWORD_CORE@HOST:PORT")
    print("# Plugins never see that URL's credentials; each connects as its own user.")
    print(render_server_config(users))
    return EXIT_OK


async def cmd_shutdown(args: argparse.Namespace) -> int:
    """Ask the running bot to stop, then wait (on its pidfd, no polling) until it has exited."""
    config = _config(args)
    data = await control(config, "shutdown", {})
    pid = int(data["pid"])
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None  # already gone
    if pidfd is not None:
        try:
            ready, _, _ = await asyncio.to_thread(select.select, [pidfd], [], [], args.timeout)
        finally:
            os.close(pidfd)
        if not ready:
            raise CliError(f"Rosey (pid {pid}) is still stopping after {args.timeout:g} s")
    print(f"Rosey (pid {pid}) stopped.")
    return EXIT_OK
