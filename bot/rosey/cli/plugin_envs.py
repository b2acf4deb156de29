"""``rosey plugins install NAME`` and the plugin-environment lines of ``rosey doctor``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.rosey.config import RoseyConfig, load_config
from bot.rosey.errors import CliError, PluginEnvironmentError
from bot.rosey.plugin_envs import EnvState, PluginEnvironment, environment_for

__all__ = ["add_install_parser", "cmd_plugins_install", "environment_checks", "format_environments"]

EXIT_OK, EXIT_FAILURE = 0, 2


def add_install_parser(plugins_sub: Any, common: argparse.ArgumentParser) -> None:
    """``rosey plugins install`` under ``rosey plugins``."""
    install = plugins_sub.add_parser(
        "install",
        parents=[common],
        help="build a plugin's own environment from its requirements.txt / pyproject.toml",
        description="Build a virtual environment for one plugin from the requirements.txt (or the "
        "[project] dependencies of a pyproject.toml) in its directory, under <state_dir>/venvs/NAME, with uv "
        "(pip where uv is absent; $ROSEY_INSTALLER=pip chooses pip) and the index configured for pip "
        "(`pip config list`). Only wheels are installed: nothing is built from source. The new "
        "environment replaces the old one only once it is complete: a failed install changes nothing. "
        "The plugin uses it from the bot's next start; it is never installed at start.",
    )
    install.add_argument("name", help="the plugin, as `rosey plugins list` names it")
    install.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print the installer's output as well (always kept on failure)",
    )
    install.set_defaults(func=cmd_plugins_install)


def _environment(config: RoseyConfig, name: str) -> PluginEnvironment:
    from bot.rosey.catalog import build_catalog

    catalog = build_catalog(config)
    spec = next((s for s in catalog.specs if s.name == name), None)
    if spec is None:
        known = ", ".join(s.name for s in catalog.specs) or "none"
        raise CliError(
            f"no plugin named {name!r} (plugins: {known}; `rosey plugins list` shows where they are)"
        )
    return environment_for(config, spec, catalog.module_files.get(name))


def cmd_plugins_install(args: argparse.Namespace) -> int:
    from bot.rosey.plugin_env_install import install

    config = load_config(args.config)
    env = _environment(config, args.name)
    before = env.venv
    try:
        result = install(env)
    except PluginEnvironmentError as exc:
        kept = f"the previous environment ({before}) is kept" if before else "no environment was made"
        print(f"rosey: cannot install plugin '{args.name}': {exc}; nothing changed: {kept}", file=sys.stderr)
        if args.verbose and exc.output:
            print(exc.output, file=sys.stderr)
        elif exc.output:
            print("(rosey plugins install --verbose shows the installer's output)", file=sys.stderr)
        return EXIT_FAILURE
    if args.verbose:
        print(result.output)
    count = len(result.requirements)
    source = env.dependencies.file if env.dependencies else "?"
    print(
        f"plugin '{args.name}': environment ready in {result.seconds:.1f} s ({result.installer}, "
        f"{count} requirement{'s' * (count != 1)} from {source}): {result.venv}"
    )
    print("it is used from the bot's next start (rosey run); `rosey doctor` shows every plugin's environment")
    return EXIT_OK


def environment_checks(config: RoseyConfig) -> dict[str, dict[str, str]]:
    """Per plugin that declares dependencies: its environment's state and what it means, in words."""
    from bot.rosey.catalog import build_catalog

    catalog = build_catalog(config)
    checks: dict[str, dict[str, str]] = {}
    for spec in catalog.specs:
        env = environment_for(config, spec, catalog.module_files.get(spec.name))
        state = env.state
        if state is EnvState.NONE:
            continue
        checks[spec.name] = {"state": "problem" if env.problem else state.value, "detail": env.describe()}
    return checks


def format_environments(checks: dict[str, dict[str, str]]) -> list[str]:
    return [f"plugin {name} environment: {check['detail']}" for name, check in checks.items()]
