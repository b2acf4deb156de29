"""What ``rosey top`` draws: one frame, a pure function of a :class:`RoseyStatus`.

:func:`render` turns a status (as the control service sends it) into a rich renderable: a header
line (Rosey's pid and uptime, NATS, the sandbox, how many plugins run), the table (one row per
plugin or adapter, sorted by a :class:`SortKey`), the reasons of failed plugins under it, and in
live mode the keys. Nothing here touches a terminal, a clock or the bus, so every frame can be
tested by printing it to a ``Console`` on a string buffer; the loop that fetches, redraws and
reads keys is :mod:`bot.rosey.cli.top_live`.

Every string that comes from the bot goes through :func:`~bot.rosey.terminal.printable` and into
a ``rich.text.Text`` (never markup), so a plugin's name or error message can neither send
control sequences to the terminal nor restyle the frame with ``[bold]``-like markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from bot.rosey.core.event_bus import redact_url
from bot.rosey.supervision.status import PluginState, PluginStatus, RoseyStatus
from bot.rosey.terminal import printable

__all__ = [
    "COLUMNS",
    "QUIT_KEYS",
    "SORT_KEYS",
    "SortKey",
    "format_duration",
    "format_latency",
    "format_memory",
    "render",
    "sort_plugins",
]


class SortKey(StrEnum):
    """The order of the rows: the busiest first (cpu, memory, restarts) or by name."""

    CPU = "cpu"
    MEMORY = "memory"
    NAME = "name"
    RESTARTS = "restarts"


#: A key pressed in ``rosey top`` -> the order it switches to.
SORT_KEYS: Mapping[str, SortKey] = {
    "c": SortKey.CPU,
    "m": SortKey.MEMORY,
    "n": SortKey.NAME,
    "r": SortKey.RESTARTS,
}
#: Keys that quit ``rosey top`` (Ctrl-C quits too, as a signal).
QUIT_KEYS = frozenset({"q", "Q"})

#: The table's headers, in order; the column a SortKey orders by is marked in the frame.
COLUMNS: tuple[str, ...] = (
    "NAME",
    "KIND",
    "STATE",
    "PID",
    "RESTARTS",
    "CPU %",
    "MEMORY",
    "UPTIME",
    "COMMANDS",
    "ERRORS",
    "P50",
    "DENIED",
    "LAST EXIT",
)
_SORTED_COLUMN = {
    SortKey.CPU: "CPU %",
    SortKey.MEMORY: "MEMORY",
    SortKey.NAME: "NAME",
    SortKey.RESTARTS: "RESTARTS",
}
#: Columns left out, first to last, when the terminal is too narrow for all of them.
_DROP_ORDER = ("KIND", "DENIED", "P50", "ERRORS", "COMMANDS", "UPTIME", "PID")
_LAST_EXIT_MIN = 12  # LAST EXIT is cut to no less than this before columns are dropped
_GAP = 2  # between two columns
_NUMERIC = frozenset({"PID", "RESTARTS", "CPU %", "MEMORY", "UPTIME", "COMMANDS", "ERRORS", "P50", "DENIED"})

_STATE_STYLES = {
    PluginState.RUNNING: "green",
    PluginState.STARTING: "cyan",
    PluginState.CRASHED: "bold red",
    PluginState.BACKOFF: "yellow",
    PluginState.STOPPING: "cyan",
    PluginState.STOPPED: "dim",
    PluginState.FAILED: "bold red",
    PluginState.DISABLED: "dim",
}

# ---------------------------------------------------------------------- units


def format_duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``, ``4d03h``: two units at most, as top does."""
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_memory(mb: float) -> str:
    """Resident memory in MB (as the status carries it), in GB from 1024 MB."""
    return f"{mb / 1024:.2f} GB" if mb >= 1024 else f"{mb:.1f} MB"


def format_latency(ms: float) -> str:
    """A command latency: ``850 µs``, ``12.3 ms``, ``1.25 s``."""
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


# ---------------------------------------------------------------------- order


def sort_plugins(plugins: Iterable[PluginStatus], key: SortKey) -> list[PluginStatus]:
    """Rows in ``key``'s order: highest CPU, memory or restarts first (plugins not running, with
    no reading, last), or by name; ties by name, so the order is stable between frames."""
    by_name = sorted(plugins, key=lambda p: (p.name, p.kind))
    if key is SortKey.NAME:
        return by_name
    if key is SortKey.RESTARTS:
        return sorted(by_name, key=lambda p: -p.restarts)

    def reading(plugin: PluginStatus) -> tuple[bool, float]:
        value = plugin.cpu_percent if key is SortKey.CPU else plugin.memory_mb
        return (value is None, -(value or 0.0))

    return sorted(by_name, key=reading)


# ---------------------------------------------------------------------- frame


def _header(status: RoseyStatus) -> Text:
    running = sum(1 for p in status.plugins if p.state is PluginState.RUNNING)
    kind = "embedded" if status.nats.embedded else "external"
    header = Text()
    header.append("rosey", style="bold")
    header.append(f" pid {_or_dash(status.pid)}  up {format_duration(status.uptime_seconds)}  ")
    header.append(f"{running}/{len(status.plugins)} running", style="bold")
    header.append(f"  NATS {printable(redact_url(status.nats.url))} ({kind})")
    # Last, as it is the longest: the layers the launchers reported before plugin code ran.
    header.append(f"  sandbox {printable(status.sandbox_mode or '-')}")
    layers = {p.sandbox for p in status.plugins if p.pid is not None and p.sandbox_source is not None}
    if len(layers) == 1:
        header.append(f": {printable(layers.pop() or 'none')}")
    elif layers:
        header.append(": layers differ between plugins (rosey status shows them)")
    return header


def _row(plugin: PluginStatus) -> dict[str, Text]:
    running = plugin.pid is not None
    denied = plugin.denied_by_nats
    errors = plugin.command_errors
    return {
        "NAME": Text(printable(plugin.name), style="bold"),
        "HOST": Text(printable(plugin.host or "-")),  # s-spread
        "KIND": Text(printable(plugin.kind)),
        "STATE": Text(plugin.state.value, style=_STATE_STYLES.get(plugin.state, "")),
        "PID": Text(_or_dash(plugin.pid)),
        "RESTARTS": Text(str(plugin.restarts), style="yellow" if plugin.restarts else ""),
        "CPU %": Text("-" if plugin.cpu_percent is None else f"{plugin.cpu_percent:.1f}"),
        "MEMORY": Text("-" if plugin.memory_mb is None else format_memory(plugin.memory_mb)),
        "UPTIME": Text(format_duration(plugin.uptime_seconds) if running else "-"),
        "COMMANDS": Text(_or_dash(plugin.commands)),
        "ERRORS": Text(_or_dash(errors), style="red" if errors else ""),
        "P50": Text("-" if plugin.latency_ms_p50 is None else format_latency(plugin.latency_ms_p50)),
        "DENIED": Text(_or_dash(denied), style="bold red" if denied else ""),
        "LAST EXIT": Text(printable(plugin.last_exit or "-")),
    }


def _all_columns(rows: list[dict[str, Text]]) -> list[str]:
    """s-spread: COLUMNS, with HOST after NAME when some row has a host (a hub with ``[hosts.*]``)."""
    if any(row["HOST"].plain != "-" for row in rows):
        return [COLUMNS[0], "HOST", *COLUMNS[1:]]
    return list(COLUMNS)


def _title(column: str, sort: SortKey) -> str:
    if column != _SORTED_COLUMN[sort]:
        return column
    return column + (" ▲" if sort is SortKey.NAME else " ▼")  # names ascending, the rest descending


def _fit(rows: list[dict[str, Text]], sort: SortKey, width: int | None) -> tuple[list[str], int | None]:
    """The columns shown, and the width LAST EXIT is cut to (None: as wide as it needs).

    All of them, or on a terminal too narrow for them, without the least needed ones (in
    ``_DROP_ORDER``) until the rest fit; LAST EXIT is cut short (to no less than
    ``_LAST_EXIT_MIN``) before any column is dropped.
    """
    columns = _all_columns(rows)
    if width is None:
        return columns, None

    def natural(column: str) -> int:
        return max([len(_title(column, sort)), *(row[column].cell_len for row in rows)])

    for column in (*_DROP_ORDER, None):
        others = sum(natural(c) for c in columns if c != "LAST EXIT") + _GAP * (len(columns) - 1)
        room = width - others
        if room >= natural("LAST EXIT"):
            return columns, None
        if room >= _LAST_EXIT_MIN or column is None:
            return columns, max(room, _LAST_EXIT_MIN)
        columns.remove(column)
    raise AssertionError("unreachable")  # the loop returns at its last item


def _table(plugins: list[PluginStatus], sort: SortKey, width: int | None) -> tuple[Table, int]:
    """The table, and how many columns it leaves out for lack of width."""
    rows = [_row(plugin) for plugin in plugins]
    columns, last_exit_width = _fit(rows, sort, width)
    table = Table(
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
        show_edge=False,
        header_style="bold",
    )
    marked = _SORTED_COLUMN[sort]
    for column in columns:
        table.add_column(
            _title(column, sort),
            justify="right" if column in _NUMERIC else "left",
            no_wrap=True,
            overflow="ellipsis",
            header_style="bold reverse" if column == marked else "bold",
            # Everything but the last exit keeps its width; that one is cut short when needed.
            width=last_exit_width if column == "LAST EXIT" else None,
            min_width=None if column == "LAST EXIT" else len(_title(column, sort)),
        )
    for row in rows:
        table.add_row(*(row[column] for column in columns))
    return table, len(_all_columns(rows)) - len(columns)


def _reasons(plugins: list[PluginStatus]) -> Text | None:
    lines = Text()
    for plugin in plugins:
        if plugin.reason:
            lines.append(f"{printable(plugin.name)}: ", style="bold")
            lines.append(printable(plugin.reason), style="red" if plugin.state is PluginState.FAILED else "")
            lines.append("\n")
        if plugin.denied_by_nats and plugin.last_denied:
            lines.append(f"{printable(plugin.name)}: ", style="bold")
            lines.append(f"last denied by NATS: {printable(plugin.last_denied)}", style="red")
            lines.append("\n")
    lines.rstrip()
    return lines if lines.plain else None


def _keys(sort: SortKey, interval: float, hidden: int) -> Text:
    keys = Text(style="dim")
    keys.append("q", style="bold")
    keys.append(" quit  sort:")
    for key, order in SORT_KEYS.items():
        keys.append(" ")
        keys.append(key, style="bold reverse" if order is sort else "bold")
        keys.append(f" {order.value}")
    keys.append(f"  every {interval:g} s")
    if hidden:
        keys.append(f"  {hidden} columns hidden")
    return keys


def render(
    status: RoseyStatus,
    *,
    sort: SortKey = SortKey.CPU,
    notice: str | None = None,
    interval: float | None = None,
    width: int | None = None,
) -> RenderableType:
    """One frame of ``rosey top``.

    ``notice`` is a line shown under the header (e.g. the bot did not answer the last request, so
    the frame is older than it looks); ``interval`` (live mode) adds the line of keys at the bottom;
    ``width`` (a terminal's) leaves out the least needed columns when they do not all fit.
    """
    plugins = sort_plugins(status.plugins, sort)
    parts: list[RenderableType] = [_header(status)]
    if notice:
        parts.append(Text(printable(notice), style="bold yellow"))
    table, hidden = _table(plugins, sort, width)
    parts.append(table)
    reasons = _reasons(plugins)
    if reasons is not None:
        parts.append(reasons)
    if interval is not None:
        parts.append(Text())
        parts.append(_keys(sort, interval, hidden))
    return Group(*parts)
