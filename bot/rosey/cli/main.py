"""The ``rosey`` command.

``rosey run`` is the bot itself; every other command talks to a running instance over NATS
(found through the runtime file it writes under the state directory), except
``plugins list``, ``doctor`` and ``nats-config``, which work offline.

Exit codes: 0 success; 1 the plugin answered with an error; 2 anything else went wrong
(timeout, unknown or stopped plugin, Rosey not running, bad configuration or arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.rosey import __version__
from bot.rosey.config import RoseyConfig, load_config
from bot.rosey.core.event_bus import EventBus, redact_url
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import CliError, NoResponders, RequestTimeout, RoseyError
from bot.rosey.runtime import RuntimeInfo, read_runtime
from bot.rosey.services.router import CoreRouter, OutcomeKind, RouterConfig
from bot.rosey.supervision.status import PluginStatus, RoseyStatus

__all__ = ["main"]

EXIT_OK, EXIT_PLUGIN_ERROR, EXIT_FAILURE = 0, 1, 2
logger = logging.getLogger("rosey")


# ---------------------------------------------------------------------- helpers


def _config(args: argparse.Namespace) -> RoseyConfig:
    return load_config(args.config)


async def _connect(info: RuntimeInfo) -> EventBus:
    # Against an operator's server the credentials are in the URL, or a token in NATS_TOKEN.
    token = None if info.user else os.getenv("NATS_TOKEN") or None
    bus = EventBus(
        info.nats_url, token, "rosey-cli", user=info.user, password=info.password, connect_timeout=3.0
    )
    await bus.connect()
    return bus


async def _control(
    args: argparse.Namespace, action: str, data: dict[str, Any], timeout: float = 30.0
) -> dict[str, Any]:
    """One request to the running instance's control service; raises CliError on failure."""
    info = read_runtime(_config(args).state_dir)
    bus = await _connect(info)
    try:
        reply = await bus.request(Subjects.supervisor(action), data, "rosey-cli", timeout=timeout)
    except (NoResponders, RequestTimeout) as exc:
        raise CliError(f"Rosey (pid {info.pid}) did not answer: {exc}") from exc
    finally:
        await bus.disconnect()
    if not reply.data.get("ok"):
        raise CliError(str(reply.data.get("error", "unknown error")))
    return reply.data


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[("-" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


# ---------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from bot.rosey.cli.run import run_forever  # heavy imports only for `run`

    config = _config(args)
    _setup_logging(args.log_level or config.log_level)
    return asyncio.run(run_forever(config, nats_url=args.nats_url, chat=not args.no_chat))


async def _send(args: argparse.Namespace) -> int:
    config = _config(args)
    info = read_runtime(config.state_dir)
    bus = await _connect(info)
    try:
        known: list[str] | None = None
        with contextlib.suppress(NoResponders, RequestTimeout):
            status = await bus.request(Subjects.supervisor("status"), {}, "rosey-cli", timeout=5.0)
            known = [plugin.name for plugin in RoseyStatus.from_dict(status.data).plugins]
        router = CoreRouter(
            bus,
            RouterConfig(command_timeout=args.timeout or config.command_timeout),
            known_plugins=(lambda: known) if known is not None else None,
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
        _print_json(
            {
                "kind": outcome.kind.value,
                "message": outcome.message,
                "data": outcome.data,
                "correlation_id": outcome.correlation_id,
                "elapsed_ms": round(outcome.elapsed * 1000, 3),
            }
        )
    else:
        print(outcome.message, file=sys.stdout if outcome.ok else sys.stderr)
    if outcome.ok:
        return EXIT_OK
    return EXIT_PLUGIN_ERROR if outcome.kind in (OutcomeKind.ERROR, OutcomeKind.CRASHED) else EXIT_FAILURE


async def _status(args: argparse.Namespace) -> int:
    data = await _control(args, "status", {})
    if args.json:
        _print_json(data)
        return EXIT_OK
    status = RoseyStatus.from_dict(data)
    print(_table([plugin.to_dict() for plugin in status.plugins], PluginStatus.COLUMNS))
    for plugin in status.plugins:
        if plugin.reason:
            print(f"{plugin.name}: {plugin.reason}")
        if plugin.denied_by_nats:
            print(f"{plugin.name}: {plugin.denied_by_nats} publish/subscribe attempts denied by NATS")
    kind = "embedded" if status.nats.embedded else "external"
    print(f"NATS {redact_url(status.nats.url)} ({kind}); rosey pid {status.pid}")
    return EXIT_OK


def cmd_plugins_list(args: argparse.Namespace) -> int:
    from bot.rosey.catalog import build_catalog

    catalog = build_catalog(_config(args))
    rows = [
        {
            "name": spec.name,
            "enabled": spec.enabled,
            "source": spec.source,
            "location": str(spec.path) if spec.path else spec.entry,
            "restart": spec.restart.value,
        }
        for spec in catalog.specs
    ]
    if args.json:
        _print_json({"plugins": rows, "problems": list(catalog.problems)})
    else:
        print(_table(rows, ("name", "enabled", "source", "restart", "location")))
        for problem in catalog.problems:
            print(f"warning: {problem}", file=sys.stderr)
    return EXIT_OK


def _lifecycle_command(action: str) -> Callable[[argparse.Namespace], Awaitable[int]]:
    async def command(args: argparse.Namespace) -> int:
        data = await _control(args, action, {"name": args.name}, timeout=60.0)
        plugin = PluginStatus.from_dict(data["plugin"])
        print(f"{plugin.name}: {plugin.state}" + (f" (pid {plugin.pid})" if plugin.pid else ""))
        return EXIT_OK

    return command


async def _logs(args: argparse.Namespace) -> int:
    data = await _control(args, "logs", {"name": args.name, "lines": args.lines})
    for line in data["lines"]:
        _print_line(line)
    if not args.follow:
        return EXIT_OK
    info = read_runtime(_config(args).state_dir)
    bus = await _connect(info)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def on_line(event: Event) -> None:
        _print_line(event.data)

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


def _print_line(line: dict[str, Any]) -> None:
    stream = "err" if line.get("stream") == "stderr" else "out"
    print(f"[{stream}] {line.get('text', '')}", flush=True)


def cmd_doctor(args: argparse.Namespace) -> int:
    from bot.rosey.cli.doctor import doctor_report, format_report

    report = doctor_report()
    if args.json:
        _print_json(report)
    else:
        print(format_report(report))
    return EXIT_OK if report.get("ok", True) else EXIT_FAILURE


def cmd_nats_config(args: argparse.Namespace) -> int:
    from bot.rosey.broker.identities import (
        CORE_USER,
        Credentials,
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


# ---------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help="rosey.toml to use (default: ./rosey.toml if present, else defaults)",
    )
    parser = argparse.ArgumentParser(
        prog="rosey",
        description="Rosey: a chat bot whose plugins each run in their own sandboxed process "
        "and talk only over NATS.",
        epilog="Run `rosey COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"rosey {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[common],
        help="run the bot: NATS, plugins, router, console chat",
        description="Start NATS (embedded unless a URL is given), discover and start the plugins, route chat "
        "commands to them, and chat on the console when stdin is a terminal. "
        "Ctrl-C or SIGTERM stops everything.",
    )
    run.add_argument(
        "--nats-url", metavar="URL", help="use this NATS server instead of starting an embedded one"
    )
    run.add_argument("--no-chat", action="store_true", help="do not read chat lines from the console")
    run.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="override [rosey] log_level"
    )
    run.set_defaults(func=cmd_run)

    send = sub.add_parser(
        "send",
        parents=[common],
        help="send a command to a plugin of the running bot and print its answer",
        description="Send NAME ARGS... as if a chat user typed !NAME ARGS... "
        "Exit 0 on a result, 1 on a plugin error, 2 on timeout, unknown plugin "
        "or when Rosey is not running.",
    )
    send.add_argument("name", help="plugin name, e.g. echo")
    send.add_argument(
        "args", nargs="*", help="arguments passed to the plugin (after `--`, even ones starting with '-')"
    )
    send.add_argument(
        "--timeout", type=float, metavar="S", help="seconds to wait (default: the plugin's command_timeout)"
    )
    send.add_argument("--json", action="store_true", help="print the whole outcome as JSON")
    send.set_defaults(func=_send)

    status = sub.add_parser(
        "status",
        parents=[common],
        help="one row per plugin: state, pid, restarts, CPU, memory, uptime, last exit",
    )
    status.add_argument("--json", action="store_true", help="everything the supervisor knows, as JSON")
    status.set_defaults(func=_status)

    plugins = sub.add_parser("plugins", help="plugins Rosey would run (works without a running bot)")
    plugins_sub = plugins.add_subparsers(dest="plugins_command", required=True, metavar="ACTION")
    listing = plugins_sub.add_parser(
        "list", parents=[common], help="configured and discovered plugins (discovery never runs plugin code)"
    )
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_plugins_list)

    logs = sub.add_parser("logs", parents=[common], help="a plugin's recent stdout/stderr lines")
    logs.add_argument("name")
    logs.add_argument(
        "--lines", "-n", type=int, default=50, metavar="N", help="how many recent lines (default 50)"
    )
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.set_defaults(func=_logs)

    for action, text in (
        ("start", "start a stopped or failed plugin"),
        ("stop", "stop a plugin (SIGTERM, then SIGKILL after 5 s); it stays stopped"),
        ("restart", "stop then start a plugin"),
    ):
        lifecycle = sub.add_parser(action, parents=[common], help=text)
        lifecycle.add_argument("name")
        lifecycle.set_defaults(func=_lifecycle_command(action))

    doctor = sub.add_parser(
        "doctor",
        help="which protections this machine supports (Landlock, seccomp, namespaces) and what is missing",
    )
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)

    nats_config = sub.add_parser(
        "nats-config", parents=[common], help="print the authorization block to use with your own nats-server"
    )
    nats_config.set_defaults(func=cmd_nats_config)
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        # The command's own output says what went wrong; library warnings would say it twice.
        _setup_logging("error")
    try:
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except KeyboardInterrupt:
        return 130
    except RoseyError as exc:
        print(f"rosey: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
