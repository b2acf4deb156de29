"""``rosey test NAME``: run one plugin's tests with pytest, in this very interpreter.

The plugin is found as ``rosey run`` finds it (rosey.toml, then the plugin directories; source
is read, never run). Its tests are where ``rosey new`` puts them: the plugin's own directory for
a package plugin (``plugins/NAME/test_*.py``), ``tests/test_NAME.py`` beside the plugin directory
(or in the project) for a single-file one. pytest's exit code is ``rosey test``'s.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from bot.rosey.catalog import build_catalog
from bot.rosey.config import RoseyConfig, load_config
from bot.rosey.errors import CliError
from bot.rosey.supervision.spec import ProcessKind

__all__ = ["cmd_test", "find_plugin_file", "find_tests"]


def find_plugin_file(config: RoseyConfig, name: str) -> Path:
    """The source file of plugin ``name`` as ``rosey run`` would start it; :class:`CliError` if none."""
    catalog = build_catalog(config)
    specs = {
        spec.name: spec
        for spec in catalog.specs
        if spec.kind is ProcessKind.PLUGIN and spec.source != "example"
    }
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        where = ", ".join(_shown(d) + "/" for d in config.plugin_dirs) or "no plugin directory"
        raise CliError(
            f"no plugin named {name!r} in {where} or rosey.toml (found: {known}); "
            f"`rosey new {name}` creates one"
        )
    if spec.path is not None:
        return spec.path
    module_file = catalog.module_files.get(name)
    if module_file is None:
        raise CliError(f"plugin {name!r} ({spec.entry}) has no Python source to find its tests by")
    return module_file


def _is_package_plugin(config: RoseyConfig, plugin_file: Path) -> bool:
    """A plugin with a directory of its own (not a file directly in a plugin directory)."""
    parent = plugin_file.resolve().parent
    return all(parent != d.resolve() for d in config.plugin_dirs)


def find_tests(config: RoseyConfig, name: str, plugin_file: Path) -> list[Path]:
    """The test files or directories of plugin ``name``; empty if it has none."""
    parent = plugin_file.resolve().parent
    if _is_package_plugin(config, plugin_file) and any(parent.glob("test_*.py")):
        return [parent]  # pytest collects the package's test_*.py (and its conftest.py)
    candidates = [
        parent / f"test_{name}.py",
        parent / "tests" / f"test_{name}.py",
        parent.parent / "tests" / f"test_{name}.py",
        config.base_dir / "tests" / f"test_{name}.py",
    ]
    seen: list[Path] = []
    for candidate in candidates:
        if candidate.is_file() and candidate not in seen:
            seen.append(candidate)
    return seen[:1]


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def cmd_test(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    name = args.name
    plugin_file = find_plugin_file(config, name)
    tests = find_tests(config, name, plugin_file)
    if not tests:
        raise CliError(
            f"plugin {name!r} ({_shown(plugin_file)}) has no tests: looked for test_*.py in its own "
            f"directory and tests/test_{name}.py (`rosey new` writes one)"
        )
    missing = [module for module in ("pytest", "pytest_asyncio") if importlib.util.find_spec(module) is None]
    if missing:
        raise CliError(
            f"rosey test needs {' and '.join(missing)} in {sys.executable}: pip install 'rosey-bot[dev]'"
        )
    options: list[str] = []
    if not any("asyncio_default_fixture_loop_scope" in arg for arg in args.pytest_args):
        # pytest-asyncio's coming default, said explicitly: without it every run warns about it.
        options = ["-o", "asyncio_default_fixture_loop_scope=function"]
    command = [sys.executable, "-m", "pytest", *options, *(str(t) for t in tests), *args.pytest_args]
    print(f"rosey test {name}: {' '.join(_shown(t) for t in tests)}", flush=True)
    # The same interpreter: the one where Rosey (and the harness, a pytest11 plugin) is installed.
    return subprocess.call(command)
