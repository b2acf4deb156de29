"""A plugin's own dependencies: where they are declared, where their environment lives, its state.

A plugin in a directory of its own may declare what it needs in ``requirements.txt`` (or the
``[project] dependencies`` of a ``pyproject.toml``). ``rosey plugins install NAME``
(:mod:`bot.rosey.plugin_env_install`) builds a virtual environment for it under
``<state_dir>/venvs/NAME``; from then on the plugin is spawned with that environment's
interpreter, its packages before Rosey's (:meth:`PluginEnvironment.site_dirs`), and its sandbox
may read that environment and no other plugin's.

``<state_dir>/venvs/NAME`` is a symbolic link to the generation in use (``NAME.<id>``): a new
build is made beside it and the link replaced in one ``rename``, so a failed build changes
nothing. Each generation holds a stamp (``rosey-env.json``) saying what it was built from, so a
plugin whose requirements changed since is reported *stale* at start and by ``rosey doctor``;
nothing is ever installed at start (no surprise network access).

Nothing here runs or imports plugin code: the files are read as text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bot.rosey.config import RoseyConfig
from bot.rosey.errors import PluginEnvironmentError
from bot.rosey.grants import holds_operator_files
from bot.rosey.supervision.spec import PluginSpec

__all__ = [
    "DEPENDENCY_FILES",
    "STAMP_FILE",
    "Dependencies",
    "EnvLaunch",
    "EnvState",
    "PluginEnvironment",
    "environment_for",
    "launch_for",
    "python_tag",
    "read_dependencies",
    "venvs_dir",
]

logger = logging.getLogger(__name__)

#: Where a plugin declares its dependencies, in the order they are looked for (the first wins).
DEPENDENCY_FILES: tuple[str, ...] = ("requirements.txt", "pyproject.toml")
#: What an environment was built from, inside each generation.
STAMP_FILE = "rosey-env.json"


class EnvState(StrEnum):
    """A plugin's own environment: ``none`` (it declares no dependencies), ``missing`` (it does,
    and none was built), ``stale`` (built from other requirements or another Python), ``ready``."""

    NONE = "none"
    MISSING = "missing"
    STALE = "stale"
    READY = "ready"


@dataclass(frozen=True, kw_only=True)
class Dependencies:
    """What one plugin declares: the file, its requirement lines, and a digest of both."""

    file: Path
    requirements: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "requirements", tuple(self.requirements))

    @property
    def digest(self) -> str:
        """Changes whenever the requirements do (comments and blank lines aside)."""
        text = "\n".join((self.file.name, *self.requirements))
        return hashlib.sha256(text.encode()).hexdigest()


def _requirement_lines(path: Path) -> tuple[str, ...]:
    lines: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            # Options (-r, -e, --index-url, --find-links, --trusted-host...) would let a plugin choose
            # where the installer fetches from, or build a local project (running its code): the
            # operator's index configuration applies, and only released packages are installed.
            raise PluginEnvironmentError(
                f"{path}:{number}: option lines are not accepted in a plugin's requirements ({line!r}); "
                "list one package per line, the operator's pip configuration chooses the index"
            )
        lines.append(line)
    return tuple(lines)


def _pyproject_dependencies(path: Path) -> tuple[str, ...] | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PluginEnvironmentError(f"{path}: not valid TOML ({exc})") from exc
    project = data.get("project")
    deps = project.get("dependencies") if isinstance(project, dict) else None
    if deps is None:
        return None
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise PluginEnvironmentError(f"{path}: [project] dependencies must be a list of strings")
    lines = tuple(d.strip() for d in deps if d.strip())
    for line in lines:
        if line.startswith("-"):
            raise PluginEnvironmentError(
                f"{path}: [project] dependencies hold an option ({line!r}), not a package"
            )
    return lines


def read_dependencies(directory: Path) -> Dependencies | None:
    """The dependencies declared in ``directory``, or None if it declares none.

    Raises PluginEnvironmentError for a file that cannot be used (an option line, bad TOML).
    """
    for name in DEPENDENCY_FILES:
        path = directory / name
        if not path.is_file():
            continue
        if name == "pyproject.toml":
            deps = _pyproject_dependencies(path)
            if deps is None:
                continue  # a pyproject.toml for tools only (ruff, pytest): no environment
            return Dependencies(file=path, requirements=deps)
        return Dependencies(file=path, requirements=_requirement_lines(path))
    return None


def venvs_dir(config: RoseyConfig) -> Path:
    """Where every plugin's environment lives (the sandbox grants each plugin only its own)."""
    return config.state_dir / "venvs"


def python_tag() -> str:
    """The interpreter an environment is built for: a change of Python makes every one stale."""
    return f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True, kw_only=True)
class PluginEnvironment:
    """One plugin's own environment, as it is on disk now."""

    plugin: str
    directory: Path | None  # the plugin's own directory; None: it has none (a file beside others)
    dependencies: Dependencies | None
    link: Path  # <state_dir>/venvs/NAME, a link to the generation in use
    problem: str | None = None  # why the declaration cannot be used, in one line

    @property
    def venv(self) -> Path | None:
        """The generation in use (resolved now: a process started from it keeps it)."""
        if not self.link.is_symlink() and not self.link.is_dir():
            return None
        real = self.link.resolve()
        return real if (real / "pyvenv.cfg").is_file() else None

    def stamp(self) -> dict[str, str]:
        venv = self.venv
        if venv is None:
            return {}
        try:
            raw = json.loads((venv / STAMP_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    @property
    def state(self) -> EnvState:
        if self.dependencies is None and self.problem is None:
            return EnvState.NONE
        stamp = self.stamp()
        if not stamp:
            return EnvState.MISSING
        if self.dependencies is None or stamp.get("digest") != self.dependencies.digest:
            return EnvState.STALE
        return EnvState.STALE if stamp.get("python") != python_tag() else EnvState.READY

    @property
    def python(self) -> Path | None:
        venv = self.venv
        return venv / "bin" / "python" if venv is not None else None

    def site_dirs(self) -> tuple[str, ...]:
        """sys.path for the plugin: its own packages first, then Rosey's (for the SDK and nats-py)."""
        venv = self.venv
        if venv is None:
            return ()
        own = sorted(str(p) for p in (venv / "lib").glob("python*/site-packages"))
        return (*own, *_host_site_dirs())

    def describe(self) -> str:
        """One line for doctor and the start-up warnings."""
        state = self.state
        source = self.dependencies.file.name if self.dependencies else "its dependency file"
        if self.problem:
            return f"{source} cannot be used: {self.problem}"
        if state is EnvState.READY:
            stamp = self.stamp()
            return f"ready ({self.venv}, built by {stamp.get('installer', '?')} from {source})"
        if state is EnvState.STALE:
            return f"stale: {source} changed since it was built; run `rosey plugins install {self.plugin}`"
        if state is EnvState.MISSING:
            return f"missing: {source} declares dependencies; run `rosey plugins install {self.plugin}`"
        return "none (no requirements.txt or pyproject.toml dependencies)"


def _host_site_dirs() -> list[str]:
    """Rosey's own site-packages (its venv's, or the system's): the SDK's dependencies."""
    import site

    # Not the user site under $HOME: plugins never get it (-s), and the sandbox does not grant it.
    return [d for d in dict.fromkeys(site.getsitepackages()) if os.path.isdir(d)]


def plugin_directory(config: RoseyConfig, spec: PluginSpec, module_file: Path | None = None) -> Path | None:
    """The directory that is this plugin's own, where its dependency file may be; None if it has none.

    A plugin file directly in a plugin directory (``plugins/weather.py``) shares it with the
    other single-file plugins there, and one beside ``rosey.toml`` shares the operator's: neither
    has a directory of its own, so neither gets an environment.
    """
    file = spec.path if spec.path is not None else module_file
    if file is None:
        return None
    directory = file.resolve().parent
    shared = {d.resolve() for d in config.plugin_dirs}
    if directory in shared or holds_operator_files(directory, config):
        return None
    return directory


def environment_for(
    config: RoseyConfig, spec: PluginSpec, module_file: Path | None = None
) -> PluginEnvironment:
    """This plugin's environment as declared and as built (never raises: problems are in ``problem``)."""
    directory = plugin_directory(config, spec, module_file)
    link = venvs_dir(config) / spec.name
    if directory is None:
        return PluginEnvironment(plugin=spec.name, directory=None, dependencies=None, link=link)
    try:
        deps = read_dependencies(directory)
    except (PluginEnvironmentError, OSError, UnicodeDecodeError) as exc:
        return PluginEnvironment(
            plugin=spec.name, directory=directory, dependencies=None, link=link, problem=str(exc)
        )
    return PluginEnvironment(plugin=spec.name, directory=directory, dependencies=deps, link=link)


@dataclass(frozen=True, kw_only=True)
class EnvLaunch:
    """How to start a plugin in its own environment: that interpreter, those site directories,
    and the generation its sandbox may read."""

    python: Path
    site_dirs: tuple[str, ...]
    venv: Path


def launch_for(env: PluginEnvironment, *, zygote: bool) -> EnvLaunch | None:
    """The plugin's environment to start it in, or None (it has none); says at start what is wrong.

    A missing environment is not built here, and a stale one not rebuilt: installing means
    network access and running the installer, which only ``rosey plugins install`` does.
    """
    state = env.state
    extra = {"plugin": env.plugin}
    if state is EnvState.NONE:
        return None
    if env.problem:
        logger.warning(
            "plugin '%s': %s; starting it in Rosey's environment", env.plugin, env.problem, extra=extra
        )
        return None
    if state is EnvState.MISSING:
        logger.warning(
            "plugin '%s': its environment is missing (%s declares dependencies); starting it in Rosey's "
            "environment: run `rosey plugins install %s`",
            env.plugin,
            env.dependencies.file.name if env.dependencies else "its dependency file",
            env.plugin,
            extra=extra,
        )
        return None
    venv, python = env.venv, env.python
    if venv is None or python is None:  # removed meanwhile
        return None
    if state is EnvState.STALE:
        logger.warning(
            "plugin '%s': its environment is stale (%s changed since it was built); starting it with the "
            "old one: run `rosey plugins install %s`",
            env.plugin,
            env.dependencies.file if env.dependencies else "its dependency file",
            env.plugin,
            extra=extra,
        )
    if zygote:
        logger.info(
            "plugin '%s' has its own environment (%s): spawned with its interpreter, not forked from the "
            "zygote, which has Rosey's imports loaded and cannot switch environments",
            env.plugin,
            venv,
            extra=extra,
        )
    return EnvLaunch(python=python, site_dirs=env.site_dirs(), venv=venv)
