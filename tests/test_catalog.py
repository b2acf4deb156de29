"""Which plugins `rosey run` manages: configuration and static discovery merged, no plugin code run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot.rosey.catalog import ECHO_EXAMPLE, build_catalog
from bot.rosey.config import load_config
from bot.rosey.errors import ConfigError

pytestmark = pytest.mark.no_nats

PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface

class {cls}(PluginInterface):
    plugin_name = "{name}"

    async def handle_command(self, event):
        pass
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    pkg = root / "pkgx"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('package code ran in the core')\n")
    (pkg / "hello.py").write_text(PLUGIN.format(cls="Hello", name="hello"))
    (pkg / "two.py").write_text(PLUGIN.format(cls="A", name="a") + PLUGIN.format(cls="B", name="b"))
    monkeypatch.syspath_prepend(str(root))
    return pkg


def test_nothing_found_runs_the_echo_example(tmp_path: Path) -> None:
    catalog = build_catalog(load_config(base_dir=tmp_path))
    (spec,) = catalog.specs
    assert (spec.name, spec.path, spec.source) == ("echo", ECHO_EXAMPLE, "example")


def test_plugins_dir_and_config_tables_merge(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "greeter.py").write_text(PLUGIN.format(cls="Greeter", name="greeter"))
    (tmp_path / "rosey.toml").write_text("[plugins.greeter]\nmax_memory_mb = 64\nrestart = 'always'\n")
    catalog = build_catalog(load_config(base_dir=tmp_path))
    (spec,) = catalog.specs
    assert spec.name == "greeter" and spec.source == "directory"
    assert spec.limits.max_memory_mb == 64 and spec.restart.value == "always"


def test_module_without_class_is_resolved_statically(tmp_path: Path, package: Path) -> None:
    (tmp_path / "rosey.toml").write_text('[plugins.hello]\nmodule = "pkgx.hello"\n')
    catalog = build_catalog(load_config(base_dir=tmp_path))
    (spec,) = catalog.specs
    assert spec.entry == "pkgx.hello:Hello"
    assert catalog.module_files["hello"] == package / "hello.py"
    assert "pkgx" not in sys.modules and "pkgx.hello" not in sys.modules


def test_module_with_two_plugin_classes_must_name_one(tmp_path: Path, package: Path) -> None:
    (tmp_path / "rosey.toml").write_text('[plugins.a]\nmodule = "pkgx.two"\n')
    with pytest.raises(ConfigError, match=r"plugins\.a\.module: .*2 plugin classes \(A, B\)"):
        build_catalog(load_config(base_dir=tmp_path))
    (tmp_path / "rosey.toml").write_text('[plugins.a]\nmodule = "pkgx.two:A"\n')
    assert build_catalog(load_config(base_dir=tmp_path)).specs[0].entry == "pkgx.two:A"


def test_missing_module_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "rosey.toml").write_text('[plugins.ghost]\nmodule = "no_such_pkg.mod"\n')
    with pytest.raises(
        ConfigError, match=r"rosey.toml: plugins\.ghost\.module: module 'no_such_pkg.mod' not found"
    ):
        build_catalog(load_config(base_dir=tmp_path))


def test_table_without_plugin_is_reported(tmp_path: Path) -> None:
    (tmp_path / "rosey.toml").write_text("[plugins.lonely]\nenabled = true\n")
    catalog = build_catalog(load_config(base_dir=tmp_path))
    assert any("[plugins.lonely]" in p for p in catalog.problems)


def test_bare_echo_table_tunes_the_bundled_example_without_a_warning(tmp_path: Path) -> None:
    (tmp_path / "rosey.toml").write_text("[plugins.echo]\nmax_memory_mb = 99\n")
    catalog = build_catalog(load_config(base_dir=tmp_path))
    (spec,) = catalog.specs
    assert spec.source == "example" and spec.limits.max_memory_mb == 99
    assert catalog.problems == ()
