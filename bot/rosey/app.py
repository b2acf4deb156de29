"""``rosey run``: NATS, plugins, supervisor, watchdog, router and control service, together.

Start order: the plugin zygote (it imports while the rest starts) -> NATS (embedded unless a
URL is configured) with every identity generated up front -> the core's bus -> router and
control service -> the web surface (``[web]``: /healthz, /readyz, /metrics on 127.0.0.1) ->
storage, HTTP gateway and files -> plugins in parallel -> runtime file -> one "ready" line. Stop order is the
reverse, each plugin getting SIGTERM (so its ``on_stop`` runs) in parallel, the zygote last.

The core holds three NATS connections: the router's (chat events, commands, lifecycle events),
the control service's and the watchdog's. Traffic a plugin can cause arrives on the router's;
the CLI's requests and the liveness pings never wait in a socket behind it. Beside them, the
broker's own per-connection counters (``/connz``) are read for flood detection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections import ChainMap  # s-remote
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot.rosey.broker.identities import (
    CORE_INBOX_PREFIX,
    CORE_USER,
    Credentials,
    adapter_permissions,
    adapter_user,
    password_variable,
    plugin_permissions,
    plugin_user,
)
from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig, NatsUser
from bot.rosey.broker.traffic import TrafficMonitor, why_no_flood_detection
from bot.rosey.catalog import Catalog, build_catalog
from bot.rosey.config import Launcher, PluginConfig, RoseyConfig, load_config
from bot.rosey.config_reload import compare as compare_catalogs  # issue 16
from bot.rosey.config_reload import needs_full_restart  # issue 16
from bot.rosey.core.event_bus import EventBus, redact_url
from bot.rosey.errors import PluginStartError, RoseyError
from bot.rosey.files_config import parse_file_limits
from bot.rosey.grant_review import review_plugin, start_notice
from bot.rosey.grants import adapter_sandbox, plugin_url, sandbox_for
from bot.rosey.hosts.hub import HubSide  # s-host
from bot.rosey.plugin_envs import environment_for, launch_for
from bot.rosey.plugin_logs import PluginLogFiles
from bot.rosey.plugins.contract import Env
from bot.rosey.plugins.declared_commands import HELP_COMMAND
from bot.rosey.plugins.plugin_runner import PluginProcess, ProcessOptions
from bot.rosey.plugins.process.zygote import Zygote, zygote_supported
from bot.rosey.process_record import ProcessRecord, ProcessRole, end_leftovers
from bot.rosey.runtime import RuntimeInfo, remove_runtime, write_runtime
from bot.rosey.services.access import AccessPolicy
from bot.rosey.services.chat_admin import ChatAdmin
from bot.rosey.services.chat_help import ChatHelp
from bot.rosey.services.chat_relay import ChatRelay
from bot.rosey.services.command_metrics import CommandMetrics
from bot.rosey.services.control import ControlService
from bot.rosey.services.files import FilesService
from bot.rosey.services.gateway import HttpGateway, gateway_for
from bot.rosey.services.router import ADMIN_COMMAND, CoreRouter, RouterConfig
from bot.rosey.services.storage import StorageService
from bot.rosey.state_lock import StateLock
from bot.rosey.storage_config import parse_storage_limits
from bot.rosey.supervision.flood import FloodGuard
from bot.rosey.supervision.spec import PluginSpec, ProcessKind
from bot.rosey.supervision.status import (
    LauncherStatus,
    NatsStatus,
    RoseyStatus,
    WatchdogStatus,
)
from bot.rosey.supervision.supervisor import StartNotice, Supervisor
from bot.rosey.supervision.watchdog import Watchdog
from bot.rosey.system_limits import LimitsReport, max_payload_for, prepare_for  # s-thousand
from bot.rosey.web.auth import new_operator_token
from bot.rosey.web.dashboard import Dashboard
from bot.rosey.web.server import WebServer, build_web_app
from bot.rosey.web.sources import WebSources, supervisor_control, supervisor_output

__all__ = ["RoseyApp"]

logger = logging.getLogger(__name__)


class RoseyApp:
    """One running Rosey instance. ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        config: RoseyConfig,
        *,
        nats_url: str | None = None,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self._on_shutdown = on_shutdown  # what `rosey shutdown` calls: the runner's stop
        self._lock = StateLock(config.state_dir)
        self.log_files: PluginLogFiles | None = None
        self.external_url = nats_url or config.nats_url
        self.catalog: Catalog = build_catalog(config)
        self.server: NatsServer | None = None
        self.bus: EventBus | None = None
        self.control_bus: EventBus | None = None  # the CLI's requests do not queue behind chat traffic
        self.watchdog_bus: EventBus | None = None  # nor do liveness pings
        self.traffic: TrafficMonitor | None = None
        self.flood_guard: FloodGuard | None = None
        self.supervisor: Supervisor | None = None
        self.watchdog: Watchdog | None = None
        self.router: CoreRouter | None = None
        self.relay: ChatRelay | None = None
        self.control: ControlService | None = None
        self.storage_bus: EventBus | None = None  # plugins' storage requests, on a connection of their own
        self.storage: StorageService | None = None
        self.gateway_bus: EventBus | None = None  # plugins' HTTP requests: beside chat, not behind it
        self.gateway: HttpGateway | None = None
        self.files_bus: EventBus | None = None  # files (6d): plugins' uploads, adapters' fetches
        self.files: FilesService | None = None
        self.zygote: Zygote | None = None  # one for the app's lifetime, when plugins are forked from it
        self.record: ProcessRecord | None = None  # every process started, for the next run to clean up
        self.web: WebServer | None = None  # /healthz, /readyz, /metrics on 127.0.0.1 ([web])
        # The router's outcomes, with what it answers itself (!rosey, !help) under their own names.
        self.commands = CommandMetrics(
            [spec.name for spec in self.catalog.specs]
            + list(config.cluster.remote_plugins)  # s-host: plugins on other hosts, by name too
            + [ADMIN_COMMAND, HELP_COMMAND]
        )
        self.web_url: str | None = None
        self.operator_token = new_operator_token()  # the dashboard's buttons and logs; runtime file only
        self.dashboard: Dashboard | None = None
        self.system_limits: LimitsReport | None = None  # s-thousand: what start raised, what it could not
        self._started = False  # every plugin's first start has ended (ready or not)
        self.nats_url = ""
        self.started_at = time.time()
        self._probe: dict[str, Any] | None = None
        self._core = Credentials(user=CORE_USER)
        self._plugin_creds = {
            spec.name: Credentials(user=plugin_user(spec.name)) for spec in self.catalog.specs
        }
        self._adapter_creds = {
            spec.name: Credentials(user=adapter_user(spec.name)) for spec in self.catalog.adapters
        }
        # --- s-host: plugins on other hosts ([hosts.*]); a `rosey host` is not a hub.
        cluster = config.cluster
        self.hub: HubSide | None = None
        if cluster.hosts and cluster.host is None:
            self.hub = HubSide(cluster, config.state_dir)
        self.host_name = cluster.host.name if cluster.host is not None else cluster.hub.name
        # --- end s-host

    @property
    def embedded(self) -> bool:
        return self.external_url is None

    async def start(self) -> dict[str, PluginStartError | None]:
        """Bring everything up; returns plugin name -> None (ready) or why it did not start."""
        state_dir = self.config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock.acquire()  # before anything writes into the state directory
        # Then what a killed predecessor left running in this state dir (the lock proves none runs).
        end_leftovers(state_dir)
        self.record = ProcessRecord(state_dir)
        # --- s-thousand: descriptors for every plugin, before the zygote and nats-server inherit them
        self.system_limits = prepare_for(len(self.catalog.all_specs))
        for problem in self.system_limits.problems:
            logger.warning("system limit too low for %d plugins: %s", len(self.catalog.all_specs), problem)
        # --- end s-thousand
        for problem in self.catalog.problems:
            logger.warning("%s", problem)
        if self.config.launcher is Launcher.ZYGOTE and zygote_supported():
            self.zygote = Zygote(record=self.record)
            self.zygote.start()  # on this (main) thread, so PR_SET_PDEATHSIG ties it to us
        if self.embedded:
            self.server = NatsServer(self._server_config(state_dir))
            self.server.start()  # on this (main) thread, so PR_SET_PDEATHSIG ties it to us
            if self.server.pid is not None:
                self.record.started(ProcessRole.NATS_SERVER, "nats-server", self.server.pid)
            self.nats_url = self.server.url
            if self.hub is not None and self.server.leaf_port is not None:  # s-host
                self.hub.announce(self.server.leaf_port)
        else:
            assert self.external_url is not None
            self.nats_url = self.external_url
        self.bus = await self._connect("rosey-core")
        if self.hub is not None:  # s-host: before the router, which asks it about remote plugins
            await self.hub.start(
                self.bus, lambda name, inbox: self._connect(name, inbox_prefix=inbox), self.server
            )
        hub = self.hub
        configs = self._hub_side_configs()  # s-remote: the hub's own plugins and those on hosts

        specs: Sequence[PluginSpec] = self.catalog.all_specs  # s-spread
        if hub is not None:  # s-spread: the hub's own processes of a spread plugin keep a ledger
            specs = hub.local_specs(specs)
        self.supervisor = Supervisor(self.bus, specs, self._make_process)
        self.supervisor.start_check = self._grant_notice  # requested vs granted, once per start
        self.log_files = PluginLogFiles(state_dir / "logs")  # output outlives the bot: `rosey logs`
        self.supervisor.add_output_listener(self.log_files.write)
        supervisor = self.supervisor
        chat = self.config.chat
        self.router = CoreRouter(
            self.bus,
            RouterConfig(
                prefix=chat.prefix,
                command_timeout=self.config.command_timeout,
                timeouts={n: c.command_timeout for n, c in configs.items()},  # s-remote: configs
            ),
            known_plugins=lambda: supervisor.names(ProcessKind.PLUGIN) + (hub.plugins() if hub else []),
            why_unavailable=(
                (lambda name: hub.why_unavailable(name, supervisor.why_unavailable))  # s-host, s-spread
                if hub is not None
                else supervisor.why_unavailable
            ),
            bus_for=hub.bus_for if hub is not None else None,  # s-host
            barrier_scope=hub.barrier_scope if hub is not None else None,
            access=AccessPolicy(
                rules={n: c.access for n, c in configs.items() if c.access is not None},  # s-remote
                admins=chat.admins,
                admin_role=chat.admin_role,
            ),
            admin=ChatAdmin(supervisor, self.status, chat.prefix),
            on_outcome=self.commands.record,
            files=lambda plugin, raw, to: self.files.claim(plugin, raw, to) if self.files else None,
            help=ChatHelp(
                # s-remote: a remote plugin's commands, as its host reads them from its source
                ChainMap(self.catalog.commands, hub.declared) if hub is not None else self.catalog.commands,
                lambda: supervisor.names(ProcessKind.PLUGIN) + (hub.plugins() if hub else []),
                chat.prefix,
            ),
        )
        await self.router.start()
        if hub is not None:  # s-spread: a lost host's commands end at once
            router = self.router
            hub.attach(lambda p, before: router.in_flight_ids(p, sent_before=before), router.barrier_verdict)
        # Adapters' events reach the router (handed over in-process) and plugins (on the bus) only
        # through the relay, which checks them and stamps their platform.
        self.relay = ChatRelay(
            self.bus, {n: a.type for n, a in self.catalog.adapter_configs.items()}, on_chat=self.router.accept
        )
        await self.relay.start()
        self.control_bus = await self._connect("rosey-control")
        self.control = ControlService(
            self.control_bus,
            self.supervisor,
            self.status,
            shutdown=self._on_shutdown,
            status_without_history=lambda: self.status(history=0),  # s-thousand
            remote=hub.remote_action if hub is not None else None,  # s-host
            reload_config=self.reload_config,  # issue 16
        )
        await self.control.start()
        if self.config.web.enabled:  # before the plugins: /healthz answers while they start
            await self._start_web()
        # Storage before the plugins: their on_start may read what they stored last time.
        self.storage_bus = await self._connect("rosey-storage")
        limits = {n: parse_storage_limits(n, c.storage) for n, c in configs.items()}  # s-remote: configs
        self.storage = StorageService(self.storage_bus, limits, server=redact_url(self.nats_url))
        await self.storage.start()
        self.gateway_bus = await self._connect("rosey-http")
        self.gateway = gateway_for(self.config, self.gateway_bus)
        await self.gateway.start()
        self.files_bus = await self._connect("rosey-files")
        self.files = FilesService(
            self.files_bus,
            state_dir / "files",
            {n: parse_file_limits(n, c.files) for n, c in configs.items()},  # s-remote: configs
            self.catalog.adapter_configs.keys(),
        )
        await self.files.start()
        results = await self.supervisor.start_all()
        self.watchdog_bus = await self._connect("rosey-watchdog")
        self.watchdog = Watchdog(self.supervisor, self.watchdog_bus)
        self.watchdog.start()
        self._start_flood_detection()
        self._started = True
        write_runtime(
            state_dir,
            RuntimeInfo(
                pid=os.getpid(),
                nats_url=self.nats_url,
                user=self._core.user if self.embedded else None,
                password=self._core.password if self.embedded else None,
                embedded_nats=self.embedded,
                started_at=self.started_at,
                config=str(self.config.source) if self.config.source else None,
                web_url=self.web_url,
                operator_token=self.operator_token if self.web_url else None,
            ),
        )
        return results

    async def stop(self) -> None:
        """Stop in reverse order; safe to call after a partial start."""
        if self.traffic is not None:
            await self.traffic.stop()
        if self.watchdog is not None:
            await self.watchdog.stop()
        if self.supervisor is not None:
            await self.supervisor.stop_all()
        if self.zygote is not None:
            await self.zygote.aclose()
        if self.storage is not None:  # after the plugins: their on_stop may still store
            await self.storage.stop()
        if self.control is not None:
            await self.control.stop()
        if self.web is not None:
            await self.web.stop()
        if self.gateway is not None:
            await self.gateway.stop()
        if self.files is not None:
            await self.files.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.router is not None:
            await self.router.stop()
        if self.hub is not None:  # s-host
            await self.hub.stop()
        for bus in (
            self.watchdog_bus,
            self.files_bus,
            self.gateway_bus,
            self.storage_bus,
            self.control_bus,
            self.bus,
        ):
            if bus is not None:
                with contextlib.suppress(Exception):
                    await bus.disconnect()
        if self.server is not None:
            self.server.stop()
        remove_runtime(self.config.state_dir, os.getpid())
        if self.record is not None:
            self.record.close()
        if self.log_files is not None:
            self.log_files.close()
        self._lock.release()

    def status(self, *, history: int | None = None) -> RoseyStatus:
        """``history``: resource samples per plugin (None: the supervisor's default share; s-thousand)."""
        assert self.supervisor is not None
        violations = self.server.violations if self.server is not None else {}
        plugins = []
        for status in self.supervisor.status(history=history):
            user = self._nats_user(status.name)
            denied = violations.get(user)
            if denied:
                last = self.server.last_violation.get(user) if self.server else None
                status = dataclasses.replace(status, denied_by_nats=denied, last_denied=last)
            if self.hub is not None or self.config.cluster.host is not None:  # s-host: HOST column
                status = dataclasses.replace(status, host=self.host_name)
            plugins.append(status)
        if self.hub is not None:  # s-host: plugins on other hosts, as their heartbeats say
            plugins.extend(self.hub.rows())
        return RoseyStatus(
            pid=os.getpid(),
            nats=NatsStatus(
                url=redact_url(self.nats_url),
                embedded=self.embedded,
                pid=self.server.pid if self.server else None,
                monitor_url=self.server.monitor_url if self.server else None,
                flood_detection=self._flood_detection(),
            ),
            uptime_seconds=round(time.time() - self.started_at, 1),
            plugins=tuple(plugins),
            launcher=LauncherStatus(
                kind=self.config.launcher.value if self.zygote is not None else "spawn",
                zygote_pid=self.zygote.pid if self.zygote is not None else None,
            ),
            sandbox_mode=self.config.sandbox.value,
            sandbox_support=self._sandbox_support(),
            watchdog=WatchdogStatus(
                last_sweep_ms=round(self.watchdog.last_sweep_seconds * 1000, 3) if self.watchdog else None
            ),
            storage=self.storage.usage() if self.storage is not None else {},
            gateway=self.gateway.status() if self.gateway is not None else {},
            hosts=self.hub.hosts_status() if self.hub is not None else {},  # s-remote
        )

    # ------------------------------------------------------------------ internals

    async def _start_web(self) -> None:
        bus, relay, supervisor = self.bus, self.relay, self.supervisor
        assert supervisor is not None
        sources = WebSources(
            status=lambda: self.status(history=0),  # s-thousand: the web keeps its own history
            nats_connected=lambda: bus is not None and bus.is_connected,
            started=lambda: self._started,
            commands=self.commands.snapshot,
            relay=(lambda: relay.stats) if relay is not None else None,
            operator_token=self.operator_token,
            control=supervisor_control(supervisor),
            output=supervisor_output(supervisor),
        )
        self.dashboard = Dashboard(sources)  # the page, its live stream, logs and buttons
        app = build_web_app(sources, extra_routes=self.dashboard.routes())
        self.dashboard.install(app)
        self.web = WebServer(self.config.web, app)
        self.web_url = await self.web.start()

    def _nats_user(self, name: str) -> str:
        name = name.split("#")[0]  # issue 16: a replica (echo#2) has its plugin's identity
        return adapter_user(name) if name in self._adapter_creds else plugin_user(name)

    async def _connect(self, name: str, *, inbox_prefix: str = CORE_INBOX_PREFIX) -> EventBus:
        """One more connection of the core identity (the embedded server's core user, or NATS_TOKEN)."""
        if self.embedded:
            bus = EventBus(
                self.nats_url,
                name=name,
                user=self._core.user,
                password=self._core.password,
                inbox_prefix=inbox_prefix,
            )
        else:
            bus = EventBus(
                self.nats_url,
                token=os.getenv("NATS_TOKEN") or None,
                name=name,
                inbox_prefix=inbox_prefix,
            )
        await bus.connect()
        return bus

    def _monitor_url(self) -> str | None:
        if self.server is not None:
            return self.server.monitor_url
        return self.config.nats_monitor_url

    def _start_flood_detection(self) -> None:
        assert self.supervisor is not None
        monitor_url = self._monitor_url()
        if monitor_url is None:
            logger.warning("flood detection %s", self._flood_detection())
            return
        self.flood_guard = FloodGuard(self.supervisor)
        users = {self._nats_user(spec.name): spec.name for spec in self.catalog.all_specs}
        self.traffic = TrafficMonitor(monitor_url, users, self.flood_guard.check)
        self.traffic.start()

    def _flood_detection(self) -> str:
        """Whether plugins' publish rates are watched, in words for ``rosey status``."""
        if self.traffic is not None:
            return f"failing: {self.traffic.last_error}" if self.traffic.last_error else "on"
        why = why_no_flood_detection(
            embedded=self.embedded, monitor=self.config.nats_monitor, monitor_url=self.config.nats_monitor_url
        )
        return why or "not started"

    def _sandbox_support(self) -> dict[str, Any]:
        if self._probe is None:
            from bot.rosey.plugins.sandbox.probe import probe

            self._probe = probe()
        return self._probe

    # --- issue 16: `rosey reload` (no NAME) applies a changed rosey.toml (see config_reload.py)
    async def reload_config(self) -> dict[str, Any]:
        """Re-read rosey.toml: start new plugins, stop removed ones, give changed ones their new
        settings from their next start, restart those with another number of replicas. A file
        that does not load (or NATS refusing the new users) changes nothing: RoseyError, why."""
        assert self.supervisor is not None
        try:
            config = load_config(self.config.source, base_dir=self.config.base_dir)
            catalog = await asyncio.to_thread(build_catalog, config)
        except RoseyError as exc:
            raise RoseyError(f"rosey.toml not applied (nothing changed): {exc}") from exc
        # Adapters and the [rosey]/[nats]/[web]/[chat] tables are not reloaded: said in the report.
        catalog = dataclasses.replace(
            catalog, adapters=self.catalog.adapters, adapter_configs=self.catalog.adapter_configs
        )
        changes = compare_catalogs(self.catalog, catalog)
        if start_only := needs_full_restart(self.catalog, catalog, self.config.command_timeout):
            raise RoseyError(
                f"rosey.toml not applied (nothing changed): {', '.join(start_only)} "
                "take effect only when the bot starts; restart it (rosey shutdown, rosey run)"
            )
        old_catalog, old_creds = self.catalog, dict(self._plugin_creds)
        self.catalog = catalog
        for name in changes.added:
            self._plugin_creds[name] = Credentials(user=plugin_user(name))
        if self.server is not None:  # new users (and changed grants) need the server's new file
            try:
                await asyncio.to_thread(self.server.reload, self._server_config(self.config.state_dir))
            except RoseyError as exc:
                self.catalog, self._plugin_creds = old_catalog, old_creds
                raise RoseyError(f"rosey.toml not applied (nothing changed): {exc}") from exc
        self.config = dataclasses.replace(self.config, plugins=config.plugins)
        report: dict[str, Any] = changes.to_dict()
        failed: dict[str, str] = {}
        for name in (*changes.removed, *changes.regrouped):
            await self.supervisor.stop(name)
            self.supervisor.remove(name)
        for spec in catalog.specs:
            if spec.name in changes.changed:
                self.supervisor.replace_spec(spec)
            elif spec.name in (*changes.added, *changes.regrouped):
                self.supervisor.add(spec)
                if spec.enabled:
                    try:
                        await self.supervisor.start(spec.name)
                    except PluginStartError as exc:
                        failed[spec.name] = str(exc).strip().splitlines()[0]
        report["failed"] = failed
        logger.info("rosey.toml reloaded: %s", report)
        return report

    # --- end of issue 16

    def _server_config(self, state_dir: Path) -> NatsServerConfig:
        users = [NatsUser(user=self._core.user, password=self._core.password)]
        for spec in self.catalog.specs:
            plugin = self.catalog.configs[spec.name]
            creds = self._plugin_creds[spec.name]
            permissions = plugin_permissions(
                spec.name, extra_publish=plugin.publish, extra_subscribe=plugin.subscribe
            )
            users.append(NatsUser(user=creds.user, password=creds.password, permissions=permissions))
        for name, creds in self._adapter_creds.items():
            users.append(
                NatsUser(user=creds.user, password=creds.password, permissions=adapter_permissions(name))
            )
        if self.hub is not None:  # s-host: one leaf user per host, its ceiling
            users += self.hub.nats_users()
        return NatsServerConfig(
            work_dir=state_dir / "nats",
            store_dir=state_dir / "jetstream",
            users=tuple(users),
            monitor=self.config.nats_monitor,
            # s-thousand: room for the status of every plugin in one reply
            max_payload=max_payload_for(len(self.catalog.all_specs), self.config.nats_max_payload),
            leaf_listen=self.hub.leaf_listen if self.hub is not None else None,  # s-host
            leaf_tls=self.hub.leaf_tls if self.hub is not None else None,  # s-spread
        )

    def _hub_side_configs(self) -> dict[str, PluginConfig]:
        """s-remote: ``[plugins.NAME]`` of every plugin the router and services serve: the hub's own,
        and (on a hub) those on hosts, whose hub-side settings are in this file too."""
        configs = dict(self.catalog.configs)
        if self.hub is not None:
            configs.update(self.hub.plugin_configs(self.config))
        return configs

    def _make_process(self, spec: PluginSpec) -> PluginProcess:
        if spec.kind is ProcessKind.ADAPTER:
            return self._make_adapter_process(spec)
        plugin = self.catalog.configs[spec.name]
        creds = self._plugin_creds[spec.name]
        data_dir = self.config.state_dir / "data" / spec.name
        user, password = (creds.user, creds.password) if self.embedded else _external_credentials(spec.name)
        # --- a plugin's own environment (plugin_envs): its interpreter, its packages, its grant
        own = launch_for(
            environment_for(self.config, spec, self._module_file(spec)),
            zygote=self.config.launcher is Launcher.ZYGOTE,
        )
        options = ProcessOptions(
            entry=spec.entry,
            command=plugin.command,  # a plugin in another language: always spawned (PROTOCOL.md)
            data_dir=data_dir,
            nats_user=user,
            nats_password=password,
            env_grants=plugin.env,
            extra_env={Env.MAX_CONCURRENCY: str(plugin.max_concurrency)},
            launcher=self.config.launcher,
            zygote=self.zygote,
            record=self.record,
            site_dirs=own.site_dirs if own is not None else (),
            replica=spec.replica,  # issue 16
            sandbox=sandbox_for(
                self.config,
                plugin,
                spec,
                data_dir=data_dir,
                nats_url=self.nats_url,
                module_file=self._module_file(spec),
                own_environment=own.venv if own is not None else None,
            ),
        )
        # The plugin gets the URL without the core's credentials and never the host's NATS_TOKEN
        # (an explicit "" stops PluginProcess from falling back to the environment's).
        python = str(own.python) if own is not None else None
        return PluginProcess(
            spec.name,
            spec.path,
            plugin_url(self.nats_url),
            nats_token="",
            python_executable=python,
            options=options,
        )

    def _make_adapter_process(self, spec: PluginSpec) -> PluginProcess:
        """An adapter's process: its settings and its secrets (read now, given to it alone), its
        own NATS identity and state directory, and a sandbox that reaches its platform only."""
        adapter = self.catalog.adapter_configs[spec.name]
        secrets = {}
        for secret, source in adapter.secrets.items():
            if source.loosely_readable():
                logger.warning("%s: %s is readable by other users; chmod 600 it", source.key, source.file)
            secrets[secret] = source.read()  # SecretUnavailable: the adapter fails, saying which
        creds = self._adapter_creds[spec.name]
        user, password = (creds.user, creds.password) if self.embedded else _external_credentials(spec.name)
        if not self.embedded and password is not None:
            user = adapter_user(spec.name)
        state_dir = self.config.state_dir / "adapters" / spec.name
        options = ProcessOptions(
            entry=spec.entry,
            data_dir=state_dir,
            nats_user=user,
            nats_password=password,
            extra_env={
                # The router's prefix, for adapters with a prefix of their own (Slack's @mention).
                Env.ADAPTER_SETTINGS: json.dumps({"prefix": self.config.chat.prefix, **adapter.settings}),
                Env.ADAPTER_SECRETS: json.dumps(secrets),
            },
            launcher=self.config.launcher,
            zygote=self.zygote,
            record=self.record,
            sandbox=adapter_sandbox(
                self.config,
                adapter,
                data_dir=state_dir,
                nats_url=self.nats_url,
                module_file=self._module_file(spec) or spec.path,
            ),
        )
        return PluginProcess(spec.name, spec.path, plugin_url(self.nats_url), nats_token="", options=options)

    def _grant_notice(self, spec: PluginSpec) -> StartNotice:
        """What the plugin's source requests now and rosey.toml does not grant (it gets nothing more)."""
        plugin = self.catalog.configs[spec.name]
        not_granted, lines = start_notice(review_plugin(self.config, plugin, spec, self._module_file(spec)))
        return StartNotice(not_granted=not_granted, log_lines=lines)

    def _module_file(self, spec: PluginSpec) -> Path | None:
        return self.catalog.module_files.get(spec.name)


def _external_credentials(name: str) -> tuple[str | None, str | None]:
    """Against an operator's server: ``ROSEY_NATS_PASSWORD_<NAME>`` if set (see ``rosey nats-config``)."""
    password = os.getenv(password_variable(name))
    return (plugin_user(name), password) if password else (None, None)
