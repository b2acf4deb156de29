"""rosey dev's reload decisions without a bot: which file belongs to which plugin, and the static check."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchfiles import Change

from bot.rosey.dev_reload import (
    DevReloader,
    ReloadOutcome,
    ReloadResult,
    WatchedPlugin,
    check_sources,
    watched_plugins,
)
from bot.rosey.plugins.plugin_registry import PluginRegistry
from bot.rosey.supervision.spec import PluginSpec

pytestmark = pytest.mark.no_nats

GOOD = (
    "from bot.rosey.plugins.plugin_interface import PluginInterface\n\n"
    "class P(PluginInterface):\n    plugin_name = {name!r}\n\n"
    "    async def handle_command(self, event):\n        pass\n"
)


def test_a_package_plugin_owns_its_modules_but_not_its_tests(tmp_path: Path) -> None:
    root = tmp_path / "plugins" / "hello"
    plugin = WatchedPlugin(name="hello", main_file=root / "plugin.py", root=root)
    assert plugin.owns(root / "plugin.py")
    assert plugin.owns(root / "helpers" / "words.py")
    assert not plugin.owns(root / "test_hello.py")
    assert not plugin.owns(root / "conftest.py")
    assert not plugin.owns(root / "tests" / "data.py")
    assert not plugin.owns(tmp_path / "plugins" / "other.py")


def test_a_single_file_plugin_owns_only_its_file(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    specs = [
        PluginSpec(name="solo", path=plugins / "solo.py", source="directory"),
        PluginSpec(name="hello", path=plugins / "hello" / "plugin.py", source="directory"),
        PluginSpec(name="off", path=plugins / "off.py", enabled=False),
        PluginSpec(name="ep", entry="pkg.mod:P", source="entry_point"),
    ]
    watched = {p.name: p for p in watched_plugins(specs, [plugins], tmp_path)}
    assert sorted(watched) == ["hello", "solo"]
    assert watched["solo"].root is None and watched["hello"].root == (plugins / "hello").resolve()
    reloader = DevReloader(None, list(watched.values()), report=print, watch_dirs=[])  # type: ignore[arg-type]
    owners = reloader.owners([plugins / "solo.py", plugins / "hello" / "util.py", plugins / "x.py"])
    assert owners == {
        "solo": [(plugins / "solo.py").resolve()],
        "hello": [(plugins / "hello" / "util.py").resolve()],
    }


def test_the_check_finds_syntax_errors_in_any_saved_module_without_running_it(tmp_path: Path) -> None:
    root = tmp_path / "hello"
    root.mkdir()
    marker = tmp_path / "ran"
    main = root / "plugin.py"
    main.write_text(f"open({str(marker)!r}, 'w').close()\n" + GOOD.format(name="hello"))
    plugin = WatchedPlugin(name="hello", main_file=main, root=root)
    assert check_sources(plugin, [main]) is None
    helper = root / "words.py"
    helper.write_text("def f(:\n    pass\n")
    problem = check_sources(plugin, [helper])
    assert problem is not None and "words.py:1: SyntaxError:" in problem
    helper.write_text("def f():\n    return 1\n")
    main.write_text(GOOD.format(name="other"))
    problem = check_sources(plugin, [main])
    assert problem is not None and "its plugin_name is 'other'" in problem
    assert not marker.exists()  # compiled and read, never executed


def test_the_check_catches_what_only_the_compiler_sees(tmp_path: Path) -> None:
    main = tmp_path / "solo.py"
    main.write_text(GOOD.format(name="solo") + "\ndef g():\n    nonlocal q\n")  # parses, does not compile
    problem = check_sources(WatchedPlugin(name="solo", main_file=main), [main])
    assert problem is not None and "SyntaxError" in problem and ":10:" in problem


async def test_deleted_files_and_tests_restart_nothing(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "hello").mkdir(parents=True)
    plugin = WatchedPlugin(name="hello", main_file=plugins / "hello" / "plugin.py", root=plugins / "hello")
    unknown: list[Path] = []
    reloader = DevReloader(None, [plugin], report=print, on_unknown=unknown.append)  # type: ignore[arg-type]
    changes = {
        (Change.modified, str(plugins / "hello" / "test_hello.py")),
        (Change.deleted, str(plugins / "gone.py")),
    }
    assert await reloader.handle(changes) == []
    assert unknown == []


def test_a_reload_result_is_one_line() -> None:
    ok = ReloadResult(
        plugin="hello", outcome=ReloadOutcome.RELOADED, files=(Path("/x/plugin.py"),), seconds=0.2
    )
    assert ok.line() == "rosey dev: hello reloaded in 0.20s (/x/plugin.py)"
    with pytest.raises(ValueError):
        ReloadResult(plugin="hello", outcome=ReloadOutcome.FAILED, files=(), seconds=0.1)


def test_a_broken_package_plugin_is_reported_under_its_directorys_name(tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "plugin.py").write_text("class (:\n")
    registry = PluginRegistry(plugins_dir=tmp_path, entry_point_group=None)
    registry.discover()
    assert list(registry.load_failures) == ["hello"]


def test_dev_path_means_one_plugin_a_plugin_directory_or_a_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.rosey.cli.dev import dev_config
    from bot.rosey.errors import CliError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "plugins" / "hello").mkdir(parents=True)
    (tmp_path / "plugins" / "hello" / "plugin.py").write_text(GOOD.format(name="hello"))
    (tmp_path / "plugins" / "solo.py").write_text(GOOD.format(name="solo"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "rosey.toml").write_text('[rosey]\nplugin_dirs = ["mine"]\n')

    assert dev_config(None, None).plugin_dirs == ((tmp_path / "plugins").resolve(),)
    one = dev_config("plugins/solo.py", None)
    assert one.plugin_dirs == () and list(one.plugins) == ["solo"] and not one.entry_points
    assert one.plugins["solo"].path == (tmp_path / "plugins" / "solo.py").resolve()
    package = dev_config("plugins/hello", None)
    assert package.plugins["hello"].path == (tmp_path / "plugins" / "hello" / "plugin.py").resolve()
    assert dev_config("plugins", None).plugin_dirs == ((tmp_path / "plugins").resolve(),)
    assert dev_config("other", None).plugin_dirs == ((tmp_path / "other" / "mine").resolve(),)
    for bad, error in (("nowhere", "no such file"), ("other/rosey.toml", "not a Python file")):
        with pytest.raises(CliError, match=error):
            dev_config(bad, None)
