"""s-remote, without processes: the hub's part of a remote plugin in its rosey.toml, and what a
host says about its plugins' commands read as untrusted input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.catalog import build_catalog
from bot.rosey.cli.host import HostApp
from bot.rosey.config import load_config
from bot.rosey.core.events import Event
from bot.rosey.errors import CliError, ConfigError
from bot.rosey.hosts.config import HostEntry
from bot.rosey.hosts.declared import (
    declared_from_wire,
    declared_to_wire,
    read_commands_file,
    remote_plugin_rows,
    write_commands_file,
)
from bot.rosey.hosts.denials import UNATTRIBUTED, LeafDenials
from bot.rosey.hosts.registry import HostRegistry
from bot.rosey.hosts.status import denial_lines
from bot.rosey.plugins.commands import MAX_COMMANDS, Command
from bot.rosey.plugins.declared_commands import PluginCommands

pytestmark = pytest.mark.timeout(30)

FIXTURES = Path(__file__).parent / "fixtures"
HUB = '[rosey]\nentry_points = false\nplugin_dirs = ["plugins"]\n\n[hosts.c]\nplugins = ["far_store"]\n'


def write(directory: Path, text: str) -> Path:
    (directory / "rosey.toml").write_text(text)
    return directory / "rosey.toml"


# ---------------------------------------------------------------------------- the hub's file


def test_the_hubs_table_of_a_remote_plugin_holds_what_the_hub_applies(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            HUB + '[plugins.far_store]\nmin_role = "op"\ncommand_timeout = 20.0\n'
            "[plugins.far_store.storage]\nmax_keys = 7\n"
            '[plugins.far_store.http]\nallow = [{ url = "https://api.example.org/" }]\n',
        )
    )
    assert config.plugin("far_store").command_timeout == 20.0
    assert config.plugin("far_store").storage["max_keys"] == 7
    catalog = build_catalog(config)
    assert "far_store" not in catalog.configs  # the hub does not run it


@pytest.mark.parametrize("line", ['path = "far_store.py"', "max_memory_mb = 64", "enabled = true"])
def test_what_belongs_to_the_host_is_refused_in_the_hubs_table(tmp_path: Path, line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, HUB + f"[plugins.far_store]\n{line}\n"))
    key = line.split(" ")[0]
    assert f"plugins.far_store.{key}: plugin 'far_store' is on host 'c'" in str(caught.value)
    assert "belongs in that host's rosey.toml" in str(caught.value)


def test_a_file_of_a_remote_plugin_found_on_the_hub_is_not_started_there(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "far_store.py").write_text((FIXTURES / "far_store.py").read_text())
    catalog = build_catalog(load_config(write(tmp_path, HUB)))
    assert "far_store" not in {spec.name for spec in catalog.specs}
    assert any("'far_store' found here is on host 'c'" in p for p in catalog.problems)


@pytest.mark.parametrize(
    "line",
    ['min_role = "op"', "[plugins.far_store.http]\nallow = []", "[plugins.far_store.storage]\nmax_keys = 3"],
)
def test_a_hosts_file_may_not_say_what_the_hub_applies(tmp_path: Path, line: str) -> None:
    text = (
        '[host]\nname = "c"\nhub = "nats-leaf://127.0.0.1:7422"\ncredentials = "c.credentials"\n\n'
        f'[plugins.far_store]\npath = "{FIXTURES / "far_store.py"}"\n'
    )
    if line.startswith("["):
        text += line + "\n"
    else:
        text = text.replace("[plugins.far_store]\n", f"[plugins.far_store]\n{line}\n")
    with pytest.raises(CliError) as caught:
        HostApp(load_config(write(tmp_path, text)))
    assert "set it in the hub's rosey.toml ([plugins.far_store] there)" in str(caught.value)


# ---------------------------------------------------------------------------- declared commands


def _wire(commands: list[Any], summary: Any = "", plugin: str = "far_store") -> dict[str, Any]:
    return {"plugins": {plugin: {"summary": summary, "commands": commands}}}


def test_declared_commands_cross_as_the_host_read_them() -> None:
    declared = {
        "far_store": PluginCommands(
            plugin="far_store",
            commands=(Command("put", usage="<key> <value>", help="Store", aliases=("p",)), Command("get")),
            summary="Keeps values",
        )
    }
    wire = json.loads(json.dumps(declared_to_wire(declared)))  # as it travels
    found, problems = declared_from_wire(wire, {"far_store"}, host="c")
    assert found == declared and problems == []


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        ([{"name": "ok"}, {"name": "BAD NAME"}], "is not a command name"),
        ([{"name": "ok"}, {"name": "x", "help": "line\x1b[31m"}], "control character"),
        ([{"name": "ok"}, {"name": "x", "help": "h" * 201}], "at most 200"),
        ([{"name": "ok"}, {"name": "x", "usage": "<a> <"}], "is not <required>"),
        ([{"name": "ok"}, {"name": "x", "usage": 5}], "usage must be a string"),
        ([{"name": "ok"}, {"name": "x", "aliases": "x"}], "aliases must be a list"),
        ([{"name": "ok"}, {"name": "x", "aliases": ["a"] * 9}], "aliases must be a list"),
        ([{"name": "ok"}, {"name": "ok"}], "'ok' twice"),
        ([{"name": "ok"}, "not an object"], "not an object"),
        ([{"name": "ok"}, {"usage": "<a>"}], "without a name"),
    ],
)
def test_what_a_host_cannot_declare_is_left_out_and_said(commands: list[Any], expected: str) -> None:
    found, problems = declared_from_wire(_wire(commands), {"far_store"}, host="c")
    assert [c.name for c in found["far_store"].commands] == ["ok"]
    assert len(problems) == 1 and expected in problems[0] and problems[0].startswith("host c: ")
    assert all(ch.isprintable() for p in problems for ch in p)


def test_a_host_describes_only_its_own_plugins_and_only_so_many_commands() -> None:
    many = [{"name": f"c{i}"} for i in range(MAX_COMMANDS + 10)]
    data = {
        "plugins": {
            "far_store": {"commands": many, "summary": "s\x07"},
            "keeper": {"commands": [{"name": "steal"}]},  # the hub's own plugin
            "\x1b[2Jspy": {"commands": []},
        }
    }
    found, problems = declared_from_wire(data, {"far_store"}, host="c")
    assert set(found) == {"far_store"}
    assert len(found["far_store"].commands) == MAX_COMMANDS and found["far_store"].summary == ""
    assert any("not its plugin" in p and "keeper" in p for p in problems)
    assert all("\x1b" not in p for p in problems)


@pytest.mark.parametrize(
    "data", [None, [], "x", {"plugins": []}, {"plugins": {"far_store": 3}}, {"plugins": {"far_store": {}}}]
)
def test_nothing_a_host_sends_raises(data: Any) -> None:
    found, _ = declared_from_wire(data, {"far_store"}, host="c")
    assert found.get("far_store", PluginCommands(plugin="far_store")).commands == ()


def test_the_hub_keeps_what_passed_for_plugins_list(tmp_path: Path) -> None:
    declared = {"far_store": PluginCommands(plugin="far_store", commands=(Command("get", usage="<key>"),))}
    write_commands_file(tmp_path, "c", declared)
    assert read_commands_file(tmp_path, "c", {"far_store"}) == declared
    assert read_commands_file(tmp_path, "c", set()) == {}  # no longer its plugin: not shown
    assert read_commands_file(tmp_path, "b", {"far_store"}) is None
    config = load_config(write(tmp_path, HUB))
    (row,) = remote_plugin_rows(config.cluster, tmp_path, "!")
    assert row["location"] == "host c" and row["commands"][0]["usage"] == "!far_store get <key>"


class _Bus:
    """What the registry needs of an EventBus: a subscription it keeps the handler of."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    async def subscribe(self, subject: str, handler: Any) -> Any:
        self.handlers[subject] = handler
        return None


async def test_the_registry_reads_a_hosts_commands_once_per_change() -> None:
    bus = _Bus()
    registry = HostRegistry(
        bus,  # type: ignore[arg-type]
        {"c": HostEntry(name="c", plugins=("far_store",))},
        timeout=3.0,
    )
    told: list[str] = []
    registry.on_commands = lambda host, declared: told.append(host)
    await registry.start()
    try:
        handler = bus.handlers["rosey.hosts.*.commands"]
        data = _wire([{"name": "get", "usage": "<key>"}])
        for _ in range(3):
            await handler(Event(subject="rosey.hosts.c.commands", data=data, source="rosey-host"))
        await handler(Event(subject="rosey.hosts.zz.commands", data=data, source="x"))  # not a host
        assert told == ["c"] and registry.declared["far_store"].commands[0].name == "get"
        await handler(Event(subject="rosey.hosts.c.commands", data=_wire([]), source="rosey-host"))
        assert told == ["c", "c"] and registry.declared["far_store"].commands == ()
    finally:
        await registry.stop()


# ---------------------------------------------------------------------------- denials


async def test_denials_without_monitoring_are_counted_not_guessed() -> None:
    denials = LeafDenials(None, {"host_b": "b"})
    denials.start()
    try:
        denials.record(6, "publish rosey.commands.echo.execute")  # as the server's log thread does
        for _ in range(500):  # handed to the loop, then looked up (nothing to look it up with)
            if denials.unattributed:
                break
            await asyncio.sleep(0.01)
    finally:
        await denials.stop()
    assert denials.of("b") is None
    lines = denial_lines({UNATTRIBUTED: {"denied_by_nats": 1, "why": denials.why_unattributed}})
    assert lines == [
        "leaf connections: 1 messages denied by NATS, not attributed to a host "
        "(the hub's NATS monitoring is off ([nats] monitor = false))"
    ]
    assert denial_lines({"b": {"denied_by_nats": 2, "last_denied": "publish x\x1b"}}) == [
        "host b: 2 messages denied by NATS (last: publish x\\x1b)"
    ]
