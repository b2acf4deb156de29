"""``rosey new NAME``: a working plugin, its test and a README, ready for ``rosey test`` and ``rosey dev``.

Two layouts. The default is a package directory ``plugins/NAME/`` (``plugin.py``, ``test_NAME.py``,
``README.md``): the plugin's directory is on its ``sys.path`` and readable in its sandbox, so it
can grow helper modules next to ``plugin.py``. ``--single-file`` writes ``plugins/NAME.py`` and
``tests/test_NAME.py`` instead. ``plugins/`` is the default of ``[rosey] plugin_dirs``, searched
recursively, so ``rosey run`` and ``rosey dev`` find the new plugin with no configuration.

Nothing is ever overwritten: if any file the scaffold would write exists, nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bot.rosey.config import RoseyConfig, load_config
from bot.rosey.core.subjects import validate_plugin_name
from bot.rosey.errors import CliError, InvalidSubject
from bot.rosey.services.router import ADMIN_COMMAND

__all__ = ["PLUGIN_FILE", "Scaffold", "cmd_new", "plan_scaffold", "write_scaffold"]

#: The main module of a package plugin (``plugins/NAME/plugin.py``).
PLUGIN_FILE = "plugin.py"

_PLUGIN = '''\
"""{name}: a Rosey plugin. `!{name} [WHO]` answers with a greeting.

Rosey runs it in a sandboxed process of its own; it talks to the bot only over NATS.
Edit it while `rosey dev` runs: each save restarts it within a second.
Guide: docs/plugins/PLUGIN-DEVELOPMENT.md
"""

import logging

from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin

logger = logging.getLogger(__name__)


class {class_name}(PluginInterface):
    # A string literal: Rosey reads it from this file without running it. It is the chat
    # command (!{name}) and goes into the plugin's NATS subjects.
    plugin_name = "{name}"

    async def handle_command(self, event: Event) -> None:
        args = event.data.get("args", [])
        who = " ".join(args) or "world"
        logger.info("greeting %s", who)  # shown inline by `rosey dev`, kept by `rosey logs {name}`
        await self.publish_result({{"message": f"Hello, {{who}}!"}}, event.correlation_id)


if __name__ == "__main__":
    run_plugin({class_name})
'''

_TEST = '''\
"""Tests of the {name} plugin with Rosey's pytest harness (bot.rosey.testing).

The harness starts the plugin in a real process on a private NATS server and sends it commands
the way the bot does. Run them with `rosey test {name}`.
"""

from pathlib import Path

PLUGIN = Path(__file__).resolve().parent / "{plugin_path}"


async def test_{name}_greets_who_is_named(harness):
    await harness.start_plugin("{name}", PLUGIN)
    reply = await harness.command("{name}", ["Ada"])
    assert reply.ok, reply
    assert reply.message == "Hello, Ada!"


async def test_{name}_greets_the_world_by_default(harness):
    # sandbox=True would run it under the OS sandbox `rosey run` applies (strict here: it fails
    # where the kernel cannot apply every layer).
    await harness.start_plugin("{name}", PLUGIN)
    reply = await harness.command("{name}")
    assert reply.message == "Hello, world!"
'''

_README = """\
# {name}

A Rosey plugin: `!{name} [WHO]` answers `Hello, WHO!`.

- `rosey dev`: run the bot with the console chat; saving `{plugin_file}` restarts the plugin.
- `rosey test {name}`: run its tests (`{test_file}`).
- `rosey send {name} Ada`: ask a running bot.

Everything the plugin may do is in the plugin guide, docs/plugins/PLUGIN-DEVELOPMENT.md.
"""


@dataclass(frozen=True, kw_only=True)
class Scaffold:
    """What ``rosey new`` writes: file -> content, and where the plugin and its tests are."""

    name: str
    plugin_file: Path
    test_file: Path
    files: dict[Path, str]

    def __post_init__(self) -> None:
        validate_plugin_name(self.name)
        if self.plugin_file not in self.files or self.test_file not in self.files:
            raise ValueError("the scaffold must contain its plugin and test files")


def class_name_for(name: str) -> str:
    """``calendar_manager`` -> ``CalendarManagerPlugin``; a leading digit gets ``Plugin`` in front."""
    words = "".join(part.capitalize() for part in name.split("_") if part)
    if not words or not words[0].isalpha():
        return f"Plugin{words}"
    return f"{words}Plugin"


def check_name(name: str) -> str:
    """``name`` if a plugin may have it, else :class:`CliError` saying why in one line."""
    try:
        validate_plugin_name(name)
    except InvalidSubject as exc:
        raise CliError(str(exc)) from None
    if name == ADMIN_COMMAND:
        raise CliError(f"the name {name!r} is taken: !{name} is the bot admins' own command")
    return name


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def plan_scaffold(name: str, target: Path, *, single_file: bool) -> Scaffold:
    """The files of plugin ``name`` under the plugin directory ``target`` (nothing is written)."""
    name = check_name(name)
    class_name = class_name_for(name)
    if single_file:
        plugin_file = target / f"{name}.py"
        test_file = target.parent / "tests" / f"test_{name}.py"
        readme = None
    else:
        plugin_file = target / name / PLUGIN_FILE
        test_file = target / name / f"test_{name}.py"
        readme = target / name / "README.md"
    plugin_path = Path(_relative(plugin_file, test_file.parent)).as_posix()
    files = {
        plugin_file: _PLUGIN.format(name=name, class_name=class_name),
        test_file: _TEST.format(name=name, plugin_path=plugin_path),
    }
    if readme is not None:
        files[readme] = _README.format(name=name, plugin_file=PLUGIN_FILE, test_file=test_file.name)
    return Scaffold(name=name, plugin_file=plugin_file, test_file=test_file, files=files)


def write_scaffold(scaffold: Scaffold) -> None:
    """Write every file, or none: an existing file (or a plugin already using the name) stops it."""
    existing = [path for path in scaffold.files if path.exists() or path.is_symlink()]
    if scaffold.plugin_file.name == PLUGIN_FILE and scaffold.plugin_file.parent.exists():
        existing = existing or [scaffold.plugin_file.parent]
    if existing:
        shown = os.path.relpath(existing[0]) if existing[0].is_absolute() else existing[0]
        raise CliError(f"{shown} already exists; nothing was written (choose another name or --dir)")
    try:
        for path, content in scaffold.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as stream:  # "x": never replaces a file
                stream.write(content)
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename or 'the plugin'}: {exc.strerror or exc}") from None


def _searched(config: RoseyConfig, target: Path) -> bool:
    """Does ``rosey run`` with ``config`` discover plugins under ``target``?"""
    resolved = target.resolve()
    return any(resolved == d.resolve() or resolved.is_relative_to(d.resolve()) for d in config.plugin_dirs)


def next_steps(scaffold: Scaffold, config: RoseyConfig, target: Path, cwd: Path) -> str:
    """What to do next, with the rosey.toml lines that apply to where the plugin was written."""
    shown = {path: _relative(path, cwd) for path in scaffold.files}
    name = scaffold.name
    lines = [f"Created plugin '{name}':"]
    lines += [f"  {shown[path]}" for path in scaffold.files]
    config_file = _relative(config.source, cwd) if config.source is not None else "rosey.toml"
    if _searched(config, target):
        lines.append(
            f"Rosey finds it with no configuration: {_relative(target, cwd)}/ is in [rosey] plugin_dirs "
            f'(default ["plugins"]). To tune it, in {config_file}:'
        )
        lines += [f"  [plugins.{name}]", "  command_timeout = 30    # seconds (default 10)"]
    else:
        plugin_path = scaffold.plugin_file.resolve()
        base = config.base_dir
        relative = _relative(plugin_path, base) if plugin_path.is_relative_to(base) else str(plugin_path)
        lines.append(
            f"{_relative(target, cwd)}/ is not a plugin directory of {config_file}: add these lines to it "
            "(paths are relative to rosey.toml's directory):"
        )
        lines += [f"  [plugins.{name}]", f'  path = "{Path(relative).as_posix()}"']
    test, dev = f"rosey test {name}", "rosey dev"
    width = max(len(test), len(dev)) + 3
    lines += [
        "Next:",
        f"  {test:<{width}}run its tests",
        f"  {dev:<{width}}run the bot with the console chat; type !{name} Ada; "
        f"saving {shown[scaffold.plugin_file]} reloads it",
    ]
    return "\n".join(lines)


def cmd_new(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    cwd = Path.cwd()
    if args.dir is not None:
        target = Path(args.dir).expanduser()
        target = target if target.is_absolute() else cwd / target
    else:
        # The first configured plugin directory: ./plugins unless rosey.toml says otherwise.
        target = config.plugin_dirs[0] if config.plugin_dirs else config.base_dir / "plugins"
    if target.exists() and not target.is_dir():
        raise CliError(f"{target} is not a directory")
    scaffold = plan_scaffold(args.name, target, single_file=args.single_file)
    write_scaffold(scaffold)
    print(next_steps(scaffold, config, target, cwd))
    sys.stdout.flush()
    return 0
