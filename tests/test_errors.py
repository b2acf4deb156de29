"""The exception tree: one root, one module, drawn in its docstring, and builtins still catch.

The raisers' tests at the end trigger each error through public API (no process, no server):
the error is the one of the tree, still the builtin it was before, and names its subject.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import pickle
import re
from pathlib import Path

import pytest

import bot.rosey.errors as errors_module
from bot.rosey import runtime
from bot.rosey.config import CONFIG_FILENAME, load_config
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects, validate_plugin_name, validate_token
from bot.rosey.errors import (
    BusNotConnected,
    CliError,
    ConfigError,
    HarnessNotConnected,
    InvalidSubject,
    MalformedEvent,
    NatsServerError,
    NatsServerNotFound,
    NoResponders,
    NotRunning,
    PayloadTooLarge,
    PluginCommandError,
    PluginError,
    PluginNameMismatch,
    PluginNotConnected,
    PluginNotFound,
    PluginNotStarted,
    PluginStartError,
    RequestTimeout,
    RoseyError,
    ZygoteError,
)
from bot.rosey.plugins import plugin_registry
from bot.rosey.plugins.plugin_interface import PluginInterface
from bot.rosey.plugins.plugin_runner import PluginProcess
from bot.rosey.plugins.process import zygote
from bot.rosey.supervision.supervisor import PluginSpec, Supervisor
from bot.rosey.testing import PluginHarness

pytestmark = pytest.mark.no_nats

BOT = Path(__file__).resolve().parents[1] / "bot"
ERRORS_FILE = BOT / "rosey" / "errors.py"
#: The bundled example plugins are plugin code, written as a plugin author outside this repository
#: writes theirs: their own small exception classes (for "tell the user") stay in the plugin file.
EXAMPLES = BOT / "rosey" / "plugins" / "examples"
PUBLIC = [getattr(errors_module, name) for name in errors_module.__all__]
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


# ---------------------------------------------------------------------------- the tree


def test_every_public_exception_derives_from_rosey_error() -> None:
    assert PUBLIC, "errors.__all__ is empty"
    for cls in PUBLIC:
        assert isinstance(cls, type) and issubclass(cls, RoseyError), cls


def test_errors_module_exports_every_class_it_defines() -> None:
    defined = {name for name, value in vars(errors_module).items() if inspect.isclass(value)}
    defined = {name for name in defined if getattr(errors_module, name).__module__ == errors_module.__name__}
    assert defined == set(errors_module.__all__)


def _base_names(node: ast.ClassDef) -> set[str]:
    names = set()
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.add(base.id)
        elif isinstance(base, ast.Attribute):  # e.g. nats.errors.Error, psutil.Error
            names.add(base.attr)
    return names


def test_every_exception_class_in_bot_is_defined_in_errors_py() -> None:
    classes: list[tuple[Path, ast.ClassDef]] = []
    for path in sorted(BOT.rglob("*.py")):
        if path == ERRORS_FILE or EXAMPLES in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        classes.extend((path, node) for node in ast.walk(tree) if isinstance(node, ast.ClassDef))
    assert len(classes) > 20  # the walk really saw the package

    # A class is an exception if a base is one: a builtin, one of errors.py, one of a library
    # (by the naming convention every library here follows), or one found so far (to a fixpoint).
    known = BUILTIN_EXCEPTIONS | set(errors_module.__all__)
    offenders: set[str] = set()
    grew = True
    while grew:
        grew = False
        for path, node in classes:
            bases = _base_names(node)
            library = any(b.endswith(("Error", "Exception", "Warning")) for b in bases)
            if (bases & known or library) and node.name not in known:
                known.add(node.name)
                offenders.add(f"{path.relative_to(BOT.parent)}:{node.lineno} class {node.name}")
                grew = True
    assert not offenders, f"exceptions defined outside bot/rosey/errors.py: {sorted(offenders)}"


_TREE_LINE = re.compile(
    r"^(?P<indent>(?:\|   |    )*)(?:\+-- )?(?P<name>[A-Z]\w+)(?:\s+(?P<builtin>[A-Z]\w+))?"
)


def _drawn_tree() -> dict[str, tuple[str | None, str | None]]:
    """{class: (parent, builtin)} as drawn in the docstring of errors.py."""
    doc = errors_module.__doc__ or ""
    lines = [line[4:] for line in doc.splitlines() if line.startswith("    ") and line.strip()]
    drawn: dict[str, tuple[str | None, str | None]] = {}
    stack: list[str] = []
    for line in lines:
        match = _TREE_LINE.match(line)
        assert match, f"not a line of the tree: {line!r}"
        depth = len(match["indent"]) // 4 + (1 if line.lstrip("| ").startswith("+--") else 0)
        del stack[depth:]
        parent = stack[-1] if stack else None
        assert match["name"] not in drawn, f"{match['name']} drawn twice"
        drawn[match["name"]] = (parent, match["builtin"])
        stack.append(match["name"])
    return drawn


def test_docstring_draws_the_whole_tree() -> None:
    drawn = _drawn_tree()
    assert set(drawn) == set(errors_module.__all__)
    for name, (parent, builtin) in drawn.items():
        cls = getattr(errors_module, name)
        rosey_bases = [b for b in cls.__bases__ if issubclass(b, RoseyError)]
        builtin_bases = [b.__name__ for b in cls.__bases__ if not issubclass(b, RoseyError)]
        assert [b.__name__ for b in rosey_bases] == ([parent] if parent else []), name
        assert builtin_bases == ([builtin] if builtin else []), name


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (ConfigError, ValueError),
        (InvalidSubject, ValueError),
        (MalformedEvent, ValueError),
        (BusNotConnected, ConnectionError),
        (RequestTimeout, TimeoutError),
        (NoResponders, LookupError),
        (PayloadTooLarge, ValueError),
        (NatsServerError, RuntimeError),
        (NatsServerNotFound, FileNotFoundError),
        (NatsServerNotFound, RuntimeError),
        (ZygoteError, OSError),
        (NotRunning, LookupError),
        (HarnessNotConnected, RuntimeError),
        (PluginNotFound, KeyError),
        (PluginNotFound, LookupError),
        (PluginNotStarted, RuntimeError),
        (PluginNotConnected, RuntimeError),
        (PluginNameMismatch, RuntimeError),
        (PluginStartError, RuntimeError),
    ],
)
def test_builtins_still_catch(cls: type[RoseyError], builtin: type[Exception]) -> None:
    with pytest.raises(builtin) as info:
        raise cls("boom")
    assert isinstance(info.value, RoseyError)


# ---------------------------------------------------------------------------- attributes


@pytest.mark.parametrize(
    ("error", "attributes"),
    [
        (ConfigError("c", key="plugins.a.path", file=Path("/x/rosey.toml")), {"key", "file"}),
        (InvalidSubject("i", subject="a b"), {"subject"}),
        (MalformedEvent("m", subject="s.t"), {"subject"}),
        (BusNotConnected("b", subject="s.t"), {"subject"}),
        (RequestTimeout("r", subject="s.t", timeout=0.2), {"subject", "timeout"}),
        (NoResponders("n", subject="s.t"), {"subject"}),
        (PayloadTooLarge("p", subject="s.t", size=2000, limit=1024), {"subject", "size", "limit"}),
        (PluginError("e", plugin="echo"), {"plugin"}),
        (PluginNotFound("f", plugin="echo"), {"plugin"}),
        (PluginNameMismatch("m", plugin="echo", declared="ekko"), {"plugin", "declared"}),
        (PluginStartError("s", plugin="echo"), {"plugin"}),
        (PluginCommandError("c", plugin="echo"), {"plugin"}),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_attributes_are_carried_and_survive_pickling(error: RoseyError, attributes: set[str]) -> None:
    message = error.args[0]
    assert error.args == (message,) and str(error) == message
    assert set(vars(error)) == attributes
    assert all(getattr(error, name) is not None for name in attributes)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and copy.args == error.args and vars(copy) == vars(error)


def test_attributes_default_to_none() -> None:
    assert PluginError("e").plugin is None
    timeout = RequestTimeout("t")
    assert timeout.subject is None and timeout.timeout is None
    assert ConfigError("c").key is None and ConfigError("c").file is None


def test_plugin_not_found_prints_its_message_not_a_key_repr() -> None:
    # A KeyError's str() is the repr of its key; this one is a sentence for people.
    assert str(PluginNotFound("no plugin named 'x'")) == "no plugin named 'x'"


def test_moved_classes_are_still_importable_where_they_were() -> None:
    assert runtime.NotRunning is NotRunning
    assert zygote.ZygoteError is ZygoteError
    assert issubclass(CliError, RoseyError)


# ---------------------------------------------------------------------------- the raisers


class _Quiet(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "quiet"

    async def handle_command(self, event: Event) -> None:
        pass


async def test_plugin_sdk_before_connect_raises_plugin_not_connected() -> None:
    plugin = _Quiet()
    with pytest.raises(RuntimeError, match="is not connected; run\\(\\) connects it") as info:
        await plugin.publish_event("hello", {})
    assert isinstance(info.value, PluginNotConnected) and info.value.plugin == "quiet"


async def test_plugin_started_under_another_name_raises_name_mismatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROSEY_PLUGIN_NAME", "loud")
    plugin = _Quiet()
    with pytest.raises(RuntimeError, match="plugin_name is 'quiet' but Rosey started it as 'loud'") as info:
        await plugin.connect()  # refused before any connection is tried
    assert isinstance(info.value, PluginNameMismatch)
    assert info.value.plugin == "loud" and info.value.declared == "quiet"
    assert plugin.event_bus is None


async def test_plugin_process_not_started_raises_plugin_not_started(tmp_path: Path) -> None:
    process = PluginProcess("idle", tmp_path / "idle.py")
    with pytest.raises(RuntimeError, match="'idle' was never started") as info:
        await process.wait()
    assert isinstance(info.value, PluginNotStarted) and info.value.plugin == "idle"
    with pytest.raises(PluginNotStarted, match="'idle' is not started") as info:
        process.add_exit_callback(lambda returncode: None)
    assert info.value.plugin == "idle"


async def test_harness_raises_from_the_tree(tmp_path: Path) -> None:
    harness = PluginHarness("nats://127.0.0.1:1", state_dir=tmp_path)
    try:
        with pytest.raises(RuntimeError, match="harness is not connected") as info:
            harness.bus  # noqa: B018 - the property is what raises
        assert isinstance(info.value, HarnessNotConnected)
        with pytest.raises(HarnessNotConnected):
            harness.router  # noqa: B018 - the property is what raises
        with pytest.raises(KeyError) as missing:
            await harness.stop_plugin("ghost")
        assert isinstance(missing.value, PluginNotFound) and missing.value.plugin == "ghost"
        assert str(missing.value) == "plugin 'ghost' was not started by this harness"
    finally:
        await harness.close()


def test_lookups_by_name_carry_the_plugin(tmp_path: Path) -> None:
    def never(spec: PluginSpec) -> PluginProcess:
        raise AssertionError("no process is started here")

    supervisor = Supervisor(None, [], never)
    with pytest.raises(PluginNotFound, match="no plugin named 'ghost'") as info:
        supervisor.get("ghost")
    assert info.value.plugin == "ghost"

    registry = plugin_registry.PluginRegistry(tmp_path, entry_point_group=None)
    registry.discover()
    with pytest.raises(PluginNotFound, match="no plugin named 'ghost'") as info:
        registry.require("ghost")
    assert info.value.plugin == "ghost"

    with pytest.raises(LookupError, match=r"module 'no_such_pkg_xyz\.mod' not found") as found:
        plugin_registry.locate_plugin_module("no_such_pkg_xyz.mod")
    assert isinstance(found.value, PluginNotFound)


def test_invalid_names_carry_the_rejected_value() -> None:
    with pytest.raises(ValueError, match="invalid plugin name") as info:
        validate_plugin_name("Bad Name")
    assert isinstance(info.value, InvalidSubject) and info.value.subject == "Bad Name"
    with pytest.raises(InvalidSubject, match="invalid action") as info:
        Subjects.control("echo", "a.b")
    assert info.value.subject == "a.b"
    with pytest.raises(InvalidSubject) as info:
        validate_token("")
    assert info.value.subject == ""


def test_malformed_event_carries_its_subject() -> None:
    with pytest.raises(MalformedEvent, match="is not JSON") as info:
        Event.from_bytes(b"not json", "rosey.events.chat")
    assert info.value.subject == "rosey.events.chat"


def test_config_error_carries_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_FILENAME
    path.write_text("[rosey]\nlauncher = 'exec'\n")
    with pytest.raises(ConfigError, match=r"rosey\.launcher: must be one of") as info:
        load_config(path)
    assert info.value.key == "rosey.launcher"
    assert info.value.file == path.resolve()

    path.write_text("not toml [")
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_config(path)
    assert info.value.key is None and info.value.file == path.resolve()
