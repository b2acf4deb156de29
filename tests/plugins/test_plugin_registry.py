"""Tests for the static plugin registry.

Every plugin module written here writes a marker file next to itself and then raises as soon as
it is imported, so "no plugin code ran in the core" is checked, not assumed: after discovery no
marker exists and none of the modules is in ``sys.modules``.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
import textwrap
from pathlib import Path

import pytest

from bot.rosey.errors import ConfigError, PluginNotFound
from bot.rosey.plugins.plugin_registry import PluginInfo, PluginRegistry

pytestmark = pytest.mark.no_nats

REPO_ROOT = Path(__file__).resolve().parents[2]
LOGGER = "bot.rosey.plugins.plugin_registry"

# Runs first in every generated module: leaves evidence, then refuses to go on.
TRAP = """\
from pathlib import Path as _P
_P(__file__).with_suffix(".ran").write_text("plugin code ran in the core process")
raise RuntimeError("plugin code ran in the core process")
"""


def write(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TRAP + textwrap.dedent(body))
    return path


def assert_nothing_ran(root: Path, module_names: set[str]) -> None:
    assert sorted(root.rglob("*.ran")) == []
    assert module_names.isdisjoint(sys.modules)


def plugin_source(class_name: str, name_stmt: str) -> str:
    return f"""
        from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin

        class {class_name}(PluginInterface):
            {name_stmt}

            async def handle_command(self, event):
                await self.publish_result({{"message": "hi"}}, event.correlation_id)
        """


PROPERTY_NAME = '@property\n            def plugin_name(self) -> str:\n                """Doc."""\n'
PROPERTY_NAME += '                return "prop"'


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    root = tmp_path / "plugins"
    write(root / "prop_plugin.py", plugin_source("PropPlugin", PROPERTY_NAME))
    write(
        root / "attr_plugin.py",
        """
        from bot.rosey.plugins import plugin_interface as pi

        class AttrPlugin(pi.PluginInterface):
            plugin_name: str = "attr_one"

            async def handle_command(self, event): ...
        """,
    )
    write(
        root / "family.py",
        """
        from bot.rosey.plugins.plugin_interface import PluginInterface as Base

        class Intermediate(Base):
            def helper(self) -> int:
                return 1

        class Child(Intermediate):
            plugin_name = "child"

            async def handle_command(self, event): ...

        class Grandchild(Child):
            plugin_name = "Bad-Name"

        class NotAPlugin:
            plugin_name = "not_a_plugin"
        """,
    )
    write(
        root / "dynamic_plugin.py",
        plugin_source(
            "DynamicPlugin",
            '@property\n            def plugin_name(self):\n                return "dyn" + "amic"',
        ),
    )
    write(root / "broken.py", "class Broken(PluginInterface:\n    pass\n")
    write(root / "_private.py", plugin_source("PrivatePlugin", 'plugin_name = "private"'))
    write(root / "helpers.py", 'def helper() -> str:\n    return "\\d is a SyntaxWarning, not an error"\n')
    write(root / "zz_duplicate.py", plugin_source("DuplicatePlugin", 'plugin_name = "prop"'))
    write(root / "examples" / "sample_plugin.py", plugin_source("SamplePlugin", 'plugin_name = "sample"'))
    return root


def test_directory_discovery_is_static(plugin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = PluginRegistry(str(plugin_dir), entry_point_group=None)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        registry.discover()

    assert sorted(registry.list_plugins()) == ["attr_one", "child", "prop", "sample"]
    assert registry.get_plugin("prop") == {
        "name": "prop",
        "class": "PropPlugin",
        "file": str(plugin_dir / "prop_plugin.py"),
        "module": "prop_plugin",
        "entry": None,
        "source": "directory",
    }
    assert registry.get_info("child") == PluginInfo(
        "child", "Child", plugin_dir / "family.py", "family", None, "directory"
    )
    assert all(isinstance(entry["class"], str) for entry in registry.plugins.values())
    assert registry.get_plugin("private") is None and registry.get_plugin("not_a_plugin") is None

    problems = registry.problems
    assert len(problems) == 4, problems
    assert any("DynamicPlugin" in p and "dynamic_plugin.py" in p and "statically" in p for p in problems)
    assert any("cannot parse" in p and "broken.py" in p for p in problems)
    assert any("Grandchild" in p and "Bad-Name" in p for p in problems)
    [duplicate] = [p for p in problems if "duplicate" in p]
    assert "'prop'" in duplicate and "prop_plugin.py" in duplicate and "zz_duplicate.py" in duplicate
    assert duplicate.index("prop_plugin.py") < duplicate.index("kept") < duplicate.index("zz_duplicate.py")
    # Each problem is logged once, as a warning from the registry's own logger.
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == problems
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == LOGGER)

    assert_nothing_ran(plugin_dir, {"prop_plugin", "attr_plugin", "family", "zz_duplicate", "sample_plugin"})


def test_discover_again_starts_afresh(plugin_dir: Path) -> None:
    registry = PluginRegistry(plugins_dir=str(plugin_dir), entry_point_group=None)
    registry.discover()
    first = (dict(registry.infos), list(registry.problems))
    (plugin_dir / "zz_duplicate.py").unlink()
    registry.discover()
    assert dict(registry.infos) == first[0]
    assert len(registry.problems) == len(first[1]) - 1
    assert not any("duplicate" in p for p in registry.problems)


def test_more_directories_and_missing_ones(tmp_path: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    write(first / "one.py", plugin_source("One", 'plugin_name = "one"'))
    write(second / "two.py", plugin_source("Two", 'plugin_name = "two"'))
    write(second / "one_again.py", plugin_source("OneAgain", 'plugin_name = "one"'))
    registry = PluginRegistry(
        first, plugin_dirs=[second, tmp_path / "missing"], entry_point_group=None, include_examples=True
    )
    registry.discover()
    assert registry.list_plugins() == ["one", "two"]
    assert registry.require("one").file == first / "one.py"
    assert len(registry.problems) == 2
    assert any("duplicate" in p and "one_again.py" in p for p in registry.problems)
    assert any("not found" in p and "missing" in p for p in registry.problems)
    with pytest.raises(PluginNotFound, match="'three'"):
        registry.require("three")
    assert_nothing_ran(tmp_path, {"one", "two", "one_again"})


def test_seed_default_skips_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    registry = PluginRegistry()
    assert registry.plugins_dir == Path("bot/rosey/plugins")
    registry.discover()
    assert [i for i in registry.infos.values() if i.source == "directory"] == []
    assert not any("bot/rosey/plugins" in p for p in registry.problems)

    with_examples = PluginRegistry(include_examples=True, entry_point_group=None)
    with_examples.discover()
    # The bundled examples (issue 13 added six beside echo).
    assert sorted(with_examples.list_plugins()) == [
        "calendar",
        "echo",
        "quote",
        "remind",
        "roll",
        "trivia",
        "weather",
    ]

    without_default = PluginRegistry(include_examples=True, entry_point_group=None, search_default_dir=False)
    without_default.discover()
    assert without_default.list_plugins() == []


def test_seed_examples_directory_finds_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    registry = PluginRegistry(plugins_dir="bot/rosey/plugins/examples")
    registry.discover()
    echo = registry.get_plugin("echo")
    assert echo is not None
    assert echo["class"] == "EchoPlugin"
    assert echo["module"] == "echo_plugin"
    assert echo["file"] == str(REPO_ROOT / "bot/rosey/plugins/examples/echo_plugin.py")
    assert registry.problems == []
    assert "bot.rosey.plugins.examples.echo_plugin" not in sys.modules


def make_distribution(site: Path, entry_points: str, modules: dict[str, str]) -> None:
    info = site / "fakeplug-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for relative, body in modules.items():
        write(site / relative, body)


FAKE_PLUGIN_MODULE = """
    from bot.rosey.plugins.plugin_interface import PluginInterface

    class FakePlugin(PluginInterface):
        @property
        def plugin_name(self) -> str:
            return "fake"

        async def handle_command(self, event): ...

    class Renamed(PluginInterface):
        plugin_name = "static_name"

        async def handle_command(self, event): ...

    class Computed(PluginInterface):
        plugin_name = "comp" + "uted"

        async def handle_command(self, event): ...

    class BadName(PluginInterface):
        plugin_name = "Bad Name"

        async def handle_command(self, event): ...
    """


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    make_distribution(
        site,
        """
        [rosey.plugins]
        fake = fakeplug_pkg.plugin:FakePlugin
        declared = fakeplug_pkg.plugin:Renamed
        computed_ep = fakeplug_pkg.plugin:Computed
        bad = fakeplug_pkg.plugin:BadName
        ghost = fakeplug_pkg.ghost:Ghost
        nested = fakeplug_pkg.plugin.sub:Thing
        [other.group]
        other = fakeplug_pkg.plugin:FakePlugin
        """,
        {"fakeplug_pkg/__init__.py": "", "fakeplug_pkg/plugin.py": FAKE_PLUGIN_MODULE},
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


def test_entry_points_are_found_without_importing(fake_site: Path) -> None:
    registry = PluginRegistry(
        fake_site / "no_plugins_here", plugin_dirs=[], entry_point_group="rosey.plugins"
    )
    registry.discover()
    source = fake_site / "fakeplug_pkg" / "plugin.py"

    assert registry.get_info("fake") == PluginInfo(
        "fake", "FakePlugin", source, "fakeplug_pkg.plugin", "fakeplug_pkg.plugin:FakePlugin", "entry_point"
    )
    assert registry.get_plugin("fake") == {
        "name": "fake",
        "class": "FakePlugin",
        "file": str(source),
        "module": "fakeplug_pkg.plugin",
        "entry": "fakeplug_pkg.plugin:FakePlugin",
        "source": "entry_point",
    }
    # The static plugin_name wins over the entry point's name: it is the subject the plugin uses.
    assert registry.require("static_name").class_name == "Renamed"
    assert registry.get_plugin("declared") is None
    # Not statically known: the entry point's name stands in, with a warning.
    assert registry.require("computed_ep").class_name == "Computed"
    assert registry.get_plugin("bad") is None and registry.get_plugin("ghost") is None
    assert registry.get_plugin("other") is None

    assert any("not found" in p and "no_plugins_here" in p for p in registry.problems)
    mine = [p for p in registry.problems if "fakeplug" in p]
    assert len(mine) == 5, mine
    assert any("'declared'" in p and "'static_name'" in p for p in mine)
    assert any("Computed" in p and "statically" in p and "'computed_ep'" in p for p in mine)
    assert any("Bad Name" in p for p in mine)
    assert any("fakeplug_pkg.ghost not found" in p for p in mine)
    assert any("fakeplug_pkg.plugin.sub not found" in p for p in mine)

    assert_nothing_ran(fake_site, {"fakeplug_pkg", "fakeplug_pkg.plugin"})


def test_entry_points_can_be_disabled_or_regrouped(fake_site: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    disabled = PluginRegistry(empty, entry_point_group=None)
    disabled.discover()
    assert disabled.list_plugins() == [] and disabled.problems == []

    other = PluginRegistry(empty, entry_point_group="other.group")
    other.discover()
    assert other.require("fake").entry == "fakeplug_pkg.plugin:FakePlugin"
    assert other.problems == [
        "entry point other = fakeplug_pkg.plugin:FakePlugin (fakeplug): the entry point is named 'other' "
        "but FakePlugin.plugin_name is 'fake'; using 'fake', as its subjects do"
    ]
    assert_nothing_ran(fake_site, {"fakeplug_pkg", "fakeplug_pkg.plugin"})

    with pytest.raises(ConfigError):
        PluginRegistry(entry_point_group="")


def test_directory_plugin_wins_over_entry_point(fake_site: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    write(local / "fake_local.py", plugin_source("LocalFake", 'plugin_name = "fake"'))
    registry = PluginRegistry(local, entry_point_group="rosey.plugins")
    registry.discover()
    assert registry.require("fake").source == "directory"
    [duplicate] = [p for p in registry.problems if "duplicate" in p]
    assert "fake_local.py" in duplicate and "fakeplug_pkg.plugin:FakePlugin" in duplicate
    assert_nothing_ran(tmp_path, {"fake_local", "fakeplug_pkg", "fakeplug_pkg.plugin"})


def test_plugin_info_is_frozen_and_validated() -> None:
    info = PluginInfo("echo", "EchoPlugin", None, "echo_plugin", None, "directory")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="invalid plugin name"):
        PluginInfo("Echo", "EchoPlugin", None, None, None, "directory")
    with pytest.raises(ValueError, match="invalid plugin source"):
        PluginInfo("echo", "EchoPlugin", None, None, None, "somewhere")  # type: ignore[arg-type]
    assert info.as_dict()["file"] is None


def test_entry_point_into_an_installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bot`` itself is installed (editable: found by a meta path finder, not a sys.path entry)."""
    make_distribution(
        tmp_path / "site",
        "[rosey.plugins]\necho = bot.rosey.plugins.examples.echo_plugin:EchoPlugin\n",
        {},
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))  # also restores sys.path after the test
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT]
    importlib.invalidate_caches()
    registry = PluginRegistry()
    registry.discover()
    echo = registry.require("echo")
    assert (echo.source, echo.class_name) == ("entry_point", "EchoPlugin")
    assert echo.file is not None and echo.file.as_posix().endswith(
        "/bot/rosey/plugins/examples/echo_plugin.py"
    )
    assert registry.problems == []
    assert "bot.rosey.plugins.examples.echo_plugin" not in sys.modules
