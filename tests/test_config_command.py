"""``[plugins.NAME] command``: a plugin in another language, validated when rosey.toml is loaded."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from bot.rosey.catalog import build_catalog
from bot.rosey.config import load_config
from bot.rosey.errors import ConfigError
from bot.rosey.grants import sandbox_for

pytestmark = pytest.mark.no_nats

PYTHON = str(Path(sys.executable).resolve())  # an ELF program that exists everywhere the tests run


def write(tmp_path: Path, table: str) -> Path:
    plugin_dir = tmp_path / "plugins" / "hello"
    plugin_dir.mkdir(parents=True, exist_ok=True)
    (plugin_dir / "index.js").write_text("// not Python: the catalog must not parse it\nconst x = 1;\n")
    config = tmp_path / "rosey.toml"
    config.write_text("[rosey]\nentry_points = false\nplugin_dirs = []\n[plugins.hello]\n" + table)
    return config


def load_error(tmp_path: Path, table: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, table))
    message = str(info.value)
    assert "\n" not in message  # one line
    return message


def test_command_runs_the_plugin_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f'path = "plugins/hello/index.js"\ncommand = ["{PYTHON}", "-I"]\n'))
    plugin = config.plugins["hello"]
    assert plugin.command == (PYTHON, "-I")
    catalog = build_catalog(config)
    spec = next(s for s in catalog.specs if s.name == "hello")
    assert spec.load_error is None  # a .js file is not inspected as Python
    policy = sandbox_for(config, plugin, spec, data_dir=tmp_path / "data", nats_url="nats://127.0.0.1:4222")
    assert PYTHON in policy.exec_paths
    assert str(tmp_path / "plugins" / "hello") in policy.read_paths  # its own directory, read-only


def test_a_bare_program_name_is_found_on_path(tmp_path: Path) -> None:
    name = "echo"  # coreutils: an ELF program on every Linux PATH
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not on PATH")
    config = load_config(write(tmp_path, f'path = "plugins/hello/index.js"\ncommand = ["{name}"]\n'))
    assert Path(config.plugins["hello"].command[0]).is_absolute()


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('path = "plugins/hello/index.js"\ncommand = ["no-such-runtime-xyz"]\n',
         "plugins.hello.command: program 'no-such-runtime-xyz' not found on PATH (install it, or give its"),
        ('path = "plugins/hello/index.js"\ncommand = "node"\n',
         "plugins.hello.command: must be a list of non-empty strings, e.g. [\"node\"], got 'node'"),
        ('path = "plugins/hello/index.js"\ncommand = [""]\n',
         "plugins.hello.command: must be a list of non-empty strings"),
        (f'command = ["{PYTHON}"]\n',
         "plugins.hello.command: needs 'path': the plugin's main file, given to the program as its last"),
        (f'module = "some.module:Plugin"\ncommand = ["{PYTHON}"]\n',
         "plugins.hello.command: runs a file: set 'path' (the plugin's main file), not 'module'"),
        ('path = "plugins/hello/index.js"\ncommand = ["/nonexistent/runtime"]\n',
         "plugins.hello.command: program '/nonexistent/runtime' not found (install it, or give its abs"),
        ('path = "plugins/hello/index.js"\ncommand = ["echo"]\nmax_processes = 2\n',
         "plugins.hello.max_processes: must be 0 for a plugin with 'command' (it may exec only its program)"),
    ],
)  # fmt: skip
def test_bad_commands_are_one_line_errors(tmp_path: Path, table: str, error: str) -> None:
    assert error in load_error(tmp_path, table)


def test_a_file_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "runtime"
    plain.write_bytes(b"\x7fELF not really")
    plain.chmod(0o644)
    message = load_error(tmp_path, f'path = "plugins/hello/index.js"\ncommand = ["{plain}"]\n')
    assert f"plugins.hello.command: {plain} is not executable (chmod +x it)" in message


def test_a_script_is_refused_with_the_fix(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text('#!/bin/sh\nexec node "$@"\n')
    script.chmod(0o755)
    message = load_error(tmp_path, f'path = "plugins/hello/index.js"\ncommand = ["{script}"]\n')
    assert "is not an ELF executable (a script?); name its interpreter instead" in message
