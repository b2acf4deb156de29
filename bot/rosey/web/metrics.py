"""``/metrics``: Prometheus families read from Rosey's typed status at scrape time.

:class:`RoseyCollector` keeps no state of its own: each scrape asks the sources (the one
:class:`~bot.rosey.supervision.status.RoseyStatus`, the router's command counts, the chat
relay's counters) and turns what they say into metric families. Labels are the plugin's (or
adapter's) name and small closed sets (state, outcome, kill cause, result), never a user, a
channel or anything a chat user types. The list of every family, with its type and labels, is
:data:`FAMILIES` (the operations docs print it).

Counters that belong to one plugin process (its CPU seconds, the commands it reports) start
again at 0 when it restarts: Prometheus' ``rate()`` and ``increase()`` read that as a reset.

A scrape is rendered on the event loop in small steps (:func:`render_metrics_cooperatively`):
for 100 plugins the text is ~2,000-4,000 samples, 15-30 ms of Python. In one go it held the
loop that long; in a worker thread it still did (the thread holds the GIL and the loop waits up
to the 5 ms switch interval each time it wants it back: p99 23 ms, worst 60 ms of loop lag per
scrape). In steps of ~1 ms the loop waits at most one step. prometheus_client still writes every
line: each step is ``generate_latest`` of one family, or of a slice of a big family's samples
whose header lines are dropped, so the text is byte for byte what one ``generate_latest`` writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from bot.rosey.services.command_metrics import LATENCY_BUCKETS, CommandSnapshot
from bot.rosey.supervision.status import PluginState, PluginStatus, RoseyStatus
from bot.rosey.web.health import readiness
from bot.rosey.web.sources import WebSources

__all__ = [
    "FAMILIES",
    "MetricsSnapshot",
    "RoseyCollector",
    "metrics_registry",
    "render_metrics",
    "render_metrics_cooperatively",
]

_MB = 1024 * 1024
#: Plugins whose families are built per step of a cooperative render (~0.5 ms each here).
PLUGINS_PER_STEP = 10
#: Samples encoded per step (``generate_latest`` of a slice of one family: ~1 ms here).
SAMPLES_PER_STEP = 150
#: A cooperative render lets the loop run once this much work was done since it last did.
STEP_SECONDS = 0.001
_GATEWAY_RESULTS = ("completed", "refused", "limited", "failed")

#: name -> (type, labels, help). Counters are named here without ``_total`` (the client adds it).
FAMILIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "rosey_up": ("gauge", (), "1 while the bot process serves this endpoint"),
    "rosey_ready": ("gauge", (), "1 when /readyz would answer 200"),
    "rosey_nats_connected": ("gauge", (), "1 while the core's NATS connection is up"),
    "rosey_uptime_seconds": ("gauge", (), "Seconds since rosey run started"),
    "rosey_watchdog_sweep_seconds": ("gauge", (), "Duration of the watchdog's last resource sweep"),
    "rosey_plugin_info": ("gauge", ("plugin", "kind"), "1 per plugin or adapter; kind: plugin|adapter"),
    "rosey_plugin_state": (
        "gauge",
        ("plugin", "state"),
        "1 for the plugin's current state, 0 for the others",
    ),
    "rosey_plugin_up": ("gauge", ("plugin",), "1 while the plugin is running"),
    "rosey_plugin_restarts": ("counter", ("plugin",), "Restarts by the supervisor since the bot started"),
    "rosey_plugin_cpu_seconds": ("counter", ("plugin",), "CPU time (user + system) of the running process"),
    "rosey_plugin_resident_memory_bytes": ("gauge", ("plugin",), "Resident memory of the running process"),
    "rosey_plugin_threads": ("gauge", ("plugin",), "Threads of the running process"),
    "rosey_plugin_open_fds": ("gauge", ("plugin",), "Open file descriptors of the running process"),
    "rosey_plugin_uptime_seconds": ("gauge", ("plugin",), "Seconds since the running process started"),
    "rosey_plugin_disk_bytes": ("gauge", ("plugin",), "Blocks its data directory takes (with a disk quota)"),
    "rosey_plugin_commands": (
        "counter",
        ("plugin",),
        "Commands the running process handled (its own report)",
    ),
    "rosey_plugin_command_errors": (
        "counter",
        ("plugin",),
        "Commands the running process answered with an error (its own report)",
    ),
    "rosey_plugin_nats_denials": (
        "counter",
        ("plugin",),
        "Publishes and subscriptions the NATS server refused to the plugin's identity",
    ),
    "rosey_plugin_watchdog_kills": (
        "counter",
        ("plugin", "reason"),
        "Kills by the watchdog since the bot started, by limit: memory, cpu, threads, open_files, "
        "processes, disk, unresponsive, flood, output, other",
    ),
    "rosey_router_commands": (
        "counter",
        ("plugin", "outcome"),
        "Chat commands by how they ended (result, error, timeout, unknown, unavailable, crashed, "
        "too_large, refused); plugin 'rosey' and 'help' for what the router answers itself, "
        "'(other)' for names the bot does not run",
    ),
    "rosey_router_command_duration_seconds": (
        "histogram",
        ("plugin",),
        "Time from the router sending a command to its outcome",
    ),
    "rosey_adapter_events": (
        "counter",
        ("adapter", "result"),
        "Chat events from an adapter: relayed (to the router and plugins) or malformed (dropped)",
    ),
    "rosey_storage_keys": ("gauge", ("plugin",), "Keys the plugin stores"),
    "rosey_storage_bytes": ("gauge", ("plugin",), "Bytes the plugin stores, as the NATS server counts them"),
    "rosey_storage_max_keys": ("gauge", ("plugin",), "The plugin's key quota"),
    "rosey_storage_max_bytes": ("gauge", ("plugin",), "The plugin's byte quota"),
    "rosey_gateway_requests": ("counter", ("plugin",), "HTTP requests the plugin asked the gateway for"),
    "rosey_gateway_results": (
        "counter",
        ("plugin", "result"),
        "Gateway requests by result: completed (any HTTP status), refused, limited, failed",
    ),
    "rosey_gateway_sent_bytes": (
        "counter",
        ("plugin",),
        "Request body bytes the gateway sent for the plugin",
    ),
    "rosey_gateway_received_bytes": (
        "counter",
        ("plugin",),
        "Response body bytes the gateway received for the plugin",
    ),
}


class _Families:
    """The families of one scrape, made on first use from :data:`FAMILIES`."""

    def __init__(self) -> None:
        self.made: dict[str, Metric] = {}

    def __call__(self, name: str) -> Metric:
        family = self.made.get(name)
        if family is None:
            kind, labels, text = FAMILIES[name]
            maker = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}.get(kind)
            if maker is None:
                family = HistogramMetricFamily(name, text, labels=list(labels))
            else:
                family = maker(name, text, labels=list(labels))
            self.made[name] = family
        return family

    def add(self, name: str, labels: list[str], value: float | None) -> None:
        if value is not None:
            family = self(name)
            assert isinstance(family, (GaugeMetricFamily, CounterMetricFamily))
            family.add_metric(labels, value)


@dataclass(frozen=True, kw_only=True)
class MetricsSnapshot:
    """Everything one scrape reports, taken at once on the event loop (:meth:`take`); rendering it
    (the costly part: ~25 ms for 100 plugins) can then run in a thread without racing the bot."""

    status: RoseyStatus
    nats_connected: bool
    started: bool
    commands: CommandSnapshot | None = None
    relayed: Mapping[str, int] = field(default_factory=dict)
    malformed: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def take(cls, sources: WebSources) -> MetricsSnapshot:
        relay = sources.relay() if sources.relay is not None else None
        return cls(
            status=sources.status(),
            nats_connected=sources.nats_connected(),
            started=sources.started(),
            commands=sources.commands() if sources.commands is not None else None,
            relayed=dict(relay.relayed_by_adapter) if relay is not None else {},
            malformed=dict(relay.malformed_by_adapter) if relay is not None else {},
        )


class RoseyCollector(Collector):
    """Rosey's families, from the snapshot ``take()`` returns at each collection."""

    def __init__(self, take: Callable[[], MetricsSnapshot]) -> None:
        self.take = take

    def collect(self) -> Iterator[Metric]:
        steps = _build(self.take())
        while True:
            try:
                next(steps)
            except StopIteration as done:
                families: list[Metric] = done.value
                break
        yield from families


def _build(snapshot: MetricsSnapshot, every: int = PLUGINS_PER_STEP) -> Generator[None, None, list[Metric]]:
    """Rosey's families from ``snapshot``; yields every ``every`` plugins (the caller may let
    the event loop run there), returns the families."""
    status = snapshot.status
    connected = snapshot.nats_connected
    ready = readiness(status, nats_connected=connected, started=snapshot.started).ready
    put = _Families()
    put.add("rosey_up", [], 1)
    put.add("rosey_ready", [], int(ready))
    put.add("rosey_nats_connected", [], int(connected))
    put.add("rosey_uptime_seconds", [], status.uptime_seconds)
    sweep = status.watchdog.last_sweep_ms
    put.add("rosey_watchdog_sweep_seconds", [], None if sweep is None else sweep / 1000)
    for index, plugin in enumerate(status.plugins, 1):
        _plugin(put, plugin)
        if index % every == 0:
            yield
    if snapshot.commands is not None:
        yield from _commands(put, snapshot.commands, every)
    for adapter, count in sorted(snapshot.relayed.items()):
        put.add("rosey_adapter_events", [adapter, "relayed"], count)
    for adapter, count in sorted(snapshot.malformed.items()):
        put.add("rosey_adapter_events", [adapter, "malformed"], count)
    for name, usage in sorted(status.storage.items()):
        put.add("rosey_storage_keys", [name], usage.get("keys"))
        put.add("rosey_storage_bytes", [name], usage.get("bytes"))
        put.add("rosey_storage_max_keys", [name], usage.get("max_keys"))
        put.add("rosey_storage_max_bytes", [name], usage.get("max_bytes"))
    yield
    for name, counters in sorted(status.gateway.items()):
        put.add("rosey_gateway_requests", [name], counters.get("requests"))
        for result in _GATEWAY_RESULTS:
            put.add("rosey_gateway_results", [name, result], counters.get(result))
        put.add("rosey_gateway_sent_bytes", [name], counters.get("bytes_out"))
        put.add("rosey_gateway_received_bytes", [name], counters.get("bytes_in"))
    return list(put.made.values())


def _plugin(put: _Families, plugin: PluginStatus) -> None:
    name = plugin.name
    put.add("rosey_plugin_info", [name, plugin.kind], 1)
    for state in PluginState:
        put.add("rosey_plugin_state", [name, state.value], int(plugin.state is state))
    put.add("rosey_plugin_up", [name], int(plugin.state is PluginState.RUNNING))
    put.add("rosey_plugin_restarts", [name], plugin.restarts)
    put.add("rosey_plugin_cpu_seconds", [name], plugin.cpu_seconds)
    memory = plugin.memory_mb
    put.add("rosey_plugin_resident_memory_bytes", [name], None if memory is None else memory * _MB)
    put.add("rosey_plugin_threads", [name], plugin.num_threads)
    put.add("rosey_plugin_open_fds", [name], plugin.num_fds)
    if plugin.pid is not None:
        put.add("rosey_plugin_uptime_seconds", [name], plugin.uptime_seconds)
    disk = plugin.disk_mb
    put.add("rosey_plugin_disk_bytes", [name], None if disk is None else disk * _MB)
    put.add("rosey_plugin_commands", [name], plugin.commands)
    put.add("rosey_plugin_command_errors", [name], plugin.command_errors)
    put.add("rosey_plugin_nats_denials", [name], plugin.denied_by_nats or 0)
    for cause, count in sorted(plugin.kills.items()):
        put.add("rosey_plugin_watchdog_kills", [name, cause], count)


def _commands(put: _Families, snapshot: CommandSnapshot, every: int) -> Generator[None, None, None]:
    for (plugin, outcome), count in sorted(snapshot.outcomes.items()):
        put.add("rosey_router_commands", [plugin, outcome], count)
    yield
    for index, (plugin, histogram) in enumerate(sorted(snapshot.latency.items()), 1):
        if index % every == 0:
            yield
        family = put("rosey_router_command_duration_seconds")
        assert isinstance(family, HistogramMetricFamily)
        buckets = [
            (_le(bound), count) for bound, count in zip(LATENCY_BUCKETS, histogram.buckets, strict=True)
        ]
        buckets.append(("+Inf", histogram.count))
        family.add_metric([plugin], buckets, histogram.sum_seconds)


def _le(bound: float) -> str:
    return repr(float(bound))


def metrics_registry(take: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    """A registry of its own (not the process-global one): Rosey's families, and the bot
    process's own CPU, memory and file descriptors (``process_*``, from prometheus_client)."""
    registry = CollectorRegistry()
    registry.register(RoseyCollector(take))
    ProcessCollector(registry=registry)
    return registry


def render_metrics(snapshot: MetricsSnapshot) -> bytes:
    """The text exposition of ``snapshot`` (safe to call off the event loop: it reads only the
    snapshot, and /proc for the bot's own process figures)."""
    return generate_latest(metrics_registry(lambda: snapshot))


class _Only:
    """A collector of the given families: what ``generate_latest`` encodes, one step at a time."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _slices(family: Metric, size: int) -> Iterator[Metric]:
    """``family`` in pieces of at most ``size`` samples (one piece if it is small)."""
    if len(family.samples) <= size:
        yield family
        return
    for start in range(0, len(family.samples), size):
        piece = Metric(family.name, family.documentation, family.type, family.unit)
        piece.samples = family.samples[start : start + size]
        yield piece


async def render_metrics_cooperatively(
    snapshot: MetricsSnapshot, *, samples_per_step: int = SAMPLES_PER_STEP, step_seconds: float = STEP_SECONDS
) -> bytes:
    """What :func:`render_metrics` returns, made on the running event loop in steps, letting
    the loop run whenever ``step_seconds`` of work were done (see the module docstring)."""
    last = time.perf_counter()

    async def breathe() -> None:
        nonlocal last
        if time.perf_counter() - last >= step_seconds:
            await asyncio.sleep(0)
            last = time.perf_counter()

    steps = _build(snapshot)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            rosey: list[Metric] = done.value
            break
        await breathe()
    process = ProcessCollector(registry=None)  # the bot process's own figures, read now
    out: list[bytes] = []
    for family in [*rosey, *process.collect()]:
        for index, piece in enumerate(_slices(family, samples_per_step)):
            text = generate_latest(_Only([piece]))
            # A later slice of a family: its samples only (generate_latest wrote HELP and TYPE
            # again, two lines: the help text's line breaks are escaped).
            out.append(text if index == 0 else text.split(b"\n", 2)[2])
            await breathe()
    return b"".join(out)
