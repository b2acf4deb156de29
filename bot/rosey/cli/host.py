"""``rosey host``: plugins on another machine, under the hub's ceiling; ``rosey hosts credentials``.

A host is ``rosey run`` without the parts that belong to the hub (router, chat relay, adapters'
services, storage, HTTP gateway, files, web): its plugins' requests to the services cross to the
hub's (s-remote), whose grants for them are in the hub's rosey.toml, so a host's ``[plugins.NAME]``
may not say them. Its own nats-server, a leaf node of the hub's,
with one NATS user per plugin as ``rosey run`` makes them; the same supervisor, launcher,
sandbox, limits, restarts and logs; and two more things: a control service on
``rosey.hosts.<host>.control.<action>`` for the hub (``rosey restart|logs NAME`` there), and a
heartbeat every second with its plugins' status rows. Its local control service
(``rosey status -c host.toml`` on the host machine) is the ordinary one.

Whatever runs here reaches the hub only through the leaf connection, which the hub's server
holds to the host's leaf user: its plugins' subjects and nothing more.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

from bot.rosey.app import RoseyApp
from bot.rosey.broker.leaf import HOSTS_SUBJECT, ensure_credentials, read_credentials
from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.config import Launcher, RoseyConfig, load_config, plugin_keys_set
from bot.rosey.errors import CliError, PluginStartError, RoseyError
from bot.rosey.hosts.agent import HeartbeatSender
from bot.rosey.hosts.config import HUB_SIDE_KEYS, HostSideConfig
from bot.rosey.hosts.spread import HostBarrierService  # s-spread
from bot.rosey.plugins.process.zygote import Zygote, zygote_supported
from bot.rosey.process_record import ProcessRecord, ProcessRole, end_leftovers
from bot.rosey.runtime import RuntimeInfo, write_runtime
from bot.rosey.services.control import ControlService
from bot.rosey.supervision.spec import PluginSpec, ProcessKind  # s-spread
from bot.rosey.supervision.status import PluginStatus
from bot.rosey.supervision.supervisor import Supervisor
from bot.rosey.supervision.watchdog import Watchdog

__all__ = ["HostApp", "cmd_host", "cmd_hosts_credentials", "run_host"]

logger = logging.getLogger(__name__)


class HostApp(RoseyApp):
    """One running ``rosey host``."""

    def __init__(self, config: RoseyConfig) -> None:
        if config.cluster.host is None:
            raise CliError(
                "this configuration has no [host] table: `rosey host` needs name, hub and credentials "
                "(see docs/operations-hosts.md)"
            )
        if config.adapters:
            raise CliError("a host runs plugins only: chat adapters belong in the hub's rosey.toml")
        if config.cluster.hosts:
            raise CliError("[hosts.*] belongs in the hub's rosey.toml, not a host's")
        if config.nats_url is not None:
            raise CliError("a host runs its own nats-server (a leaf node of the hub): remove [nats] url")
        # s-remote: the hub's router and services apply these, from the hub's file (one place).
        for name, plugin in config.plugins.items():
            for key in plugin_keys_set(plugin, config.command_timeout):
                if key in HUB_SIDE_KEYS:
                    raise CliError(
                        f"plugins.{name}.{key}: the hub applies this to a plugin on a host; "
                        f"set it in the hub's rosey.toml ([plugins.{name}] there), not the host's"
                    )
        self.side: HostSideConfig = config.cluster.host
        self.credentials = read_credentials(self.side.credentials, host=self.side.name)
        super().__init__(config)
        self.hub_control: ControlService | None = None
        self.heartbeat: HeartbeatSender | None = None
        self.barrier: HostBarrierService | None = None  # s-spread

    @property
    def leaf_url(self) -> str:
        """The hub's leaf URL with this host's credentials (they go into the server's 0600 config)."""
        parts = urlsplit(self.side.hub)
        auth = f"{quote(self.credentials.user, safe='')}:{quote(self.credentials.password, safe='')}"
        return f"nats-leaf://{auth}@{parts.hostname}:{parts.port}"

    def _server_config(self, state_dir: Path) -> NatsServerConfig:
        # No JetStream here: storage is a hub service (and two JetStream domains would need naming).
        return dataclasses.replace(
            super()._server_config(state_dir),
            jetstream=False,
            leaf_remotes=(self.leaf_url,),
            leaf_remote_ca=self.side.ca,  # s-spread: verify the hub's leaf TLS certificate
        )

    async def start(self) -> dict[str, PluginStartError | None]:
        state_dir = self.config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock.acquire()
        end_leftovers(state_dir)
        self.record = ProcessRecord(state_dir)
        for problem in self.catalog.problems:
            logger.warning("%s", problem)
        if self.config.launcher is Launcher.ZYGOTE and zygote_supported():
            self.zygote = Zygote(record=self.record)
            self.zygote.start()
        self.server = NatsServer(self._server_config(state_dir))
        self.server.start()
        if self.server.pid is not None:
            self.record.started(ProcessRole.NATS_SERVER, "nats-server", self.server.pid)
        self.nats_url = self.server.url
        self.bus = await self._connect("rosey-host-core")
        self.supervisor = Supervisor(self.bus, self._ledger_specs(), self._make_process)  # s-spread
        self.supervisor.start_check = self._grant_notice
        from bot.rosey.plugin_logs import PluginLogFiles

        self.log_files = PluginLogFiles(state_dir / "logs")
        self.supervisor.add_output_listener(self.log_files.write)
        self.control_bus = await self._connect("rosey-host-control")
        self.control = ControlService(
            self.control_bus, self.supervisor, self.status, shutdown=self._on_shutdown
        )
        await self.control.start()
        # The hub's requests arrive over the leaf connection; answers go back the same way.
        self.hub_control = ControlService(
            self.control_bus,
            self.supervisor,
            self.status,
            subject_prefix=f"{HOSTS_SUBJECT}.{self.side.name}.control",
        )
        await self.hub_control.start()
        # The hub's barrier (which commands this host's replicas hold) after one of a plugin's
        # processes died, here or elsewhere, or another host was lost.
        supervisor = self.supervisor
        self.barrier = HostBarrierService(self.control_bus, self.side.name, lambda: supervisor.plugins)
        await self.barrier.start()
        results = await self.supervisor.start_all()
        self.watchdog_bus = await self._connect("rosey-host-watchdog")
        self.watchdog = Watchdog(self.supervisor, self.watchdog_bus)
        self.watchdog.start()
        self._start_flood_detection()
        self.heartbeat = HeartbeatSender(
            self.control_bus,
            self.side.name,
            self._rows,
            interval=self.side.heartbeat_interval,
            commands=lambda: self.catalog.commands,  # s-remote: for the hub's !help
        )
        self.heartbeat.start()
        self._started = True
        write_runtime(
            state_dir,
            RuntimeInfo(
                pid=os.getpid(),
                nats_url=self.nats_url,
                user=self._core.user,
                password=self._core.password,
                embedded_nats=True,
                started_at=self.started_at,
                config=str(self.config.source) if self.config.source else None,
            ),
        )
        return results

    async def stop(self) -> None:
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        if self.hub_control is not None:
            await self.hub_control.stop()
        if self.barrier is not None:  # s-spread
            await self.barrier.stop()
        await super().stop()

    def _ledger_specs(self) -> list[PluginSpec]:
        """s-spread: every Python plugin here keeps a command ledger, as a replica does (the hub may
        spread it over hosts): its crash names the commands it held, so the hub fails only those."""
        foreign = {name for name, plugin in self.config.plugins.items() if plugin.command}
        return [
            dataclasses.replace(s, replica=1)
            if s.kind is ProcessKind.PLUGIN and s.replica is None and s.name not in foreign
            else s
            for s in self.catalog.all_specs
        ]

    def _rows(self) -> list[PluginStatus]:
        assert self.supervisor is not None
        return [p.status(history=0) for p in self.supervisor.plugins.values()]


async def run_host(config: RoseyConfig) -> int:
    """Run until SIGINT/SIGTERM; one ready line on stdout, as ``rosey run`` does."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = HostApp(config)
    try:
        results = await app.start()
    except (RoseyError, OSError) as exc:
        print(f"rosey: could not start the host: {exc}", file=sys.stderr, flush=True)
        await app.stop()
        return 2
    ready = [name for name, error in results.items() if error is None]
    failed = [name for name, error in results.items() if error is not None]
    failures = f"; {len(failed)} failed ({', '.join(failed)})" if failed else ""
    print(
        f"Rosey host {app.side.name} ready: {len(ready)}/{len(results)} plugins running "
        f"({', '.join(ready) or 'none'}){failures}; leaf node of {app.side.hub}; Ctrl-C stops.",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        print("Rosey host stopping...", file=sys.stderr, flush=True)
        await app.stop()
    return 0


def cmd_host(args: argparse.Namespace) -> int:
    from bot.rosey.cli.commands import setup_logging

    config = load_config(args.config)
    logging.getLogger().handlers.clear()  # main() set "error" for the short commands; a host logs like run
    setup_logging(args.log_level or config.log_level)
    return asyncio.run(run_host(config))


def cmd_hosts_credentials(args: argparse.Namespace) -> int:
    """Write (once) and name the file holding host NAME's leaf credentials; never print them."""
    config = load_config(args.config)
    if args.name not in config.cluster.hosts:
        known = ", ".join(config.cluster.hosts) or "none"
        raise CliError(f"no host named {args.name!r} in [hosts] (known: {known})")
    _, path = ensure_credentials(config.state_dir, args.name)
    print(path)
    port = config.cluster.hub.leaf_port
    print(
        f"Copy it to host {args.name} (mode 0600), and in that host's rosey.toml:\n"
        f'  [host]\n  name = "{args.name}"\n'
        f'  hub = "nats-leaf://<this machine>:{port if port > 0 else "PORT"}"\n'
        f'  credentials = "<path of the copy>"',
        file=sys.stderr,
    )
    if (config.state_dir / "runtime.json").exists():
        print("(a running hub reads new credentials at its next start)", file=sys.stderr)
    return 0
