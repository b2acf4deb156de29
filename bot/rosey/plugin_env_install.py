"""``rosey plugins install NAME``: build a plugin's own environment, or change nothing.

The installer is uv (a Rosey dependency: one static binary, about ten times faster than pip
here) with pip as the fallback where uv's binary is absent; ``$ROSEY_INSTALLER`` (``uv`` or
``pip``) chooses. uv does not read pip's configuration, so the operator's (``pip config list``:
index URL, extra indexes, find-links, constraints, CA file, timeout) is translated for it, and
both installers see the same packages. Neither may build from source: a source build runs the
package's own code on the host, outside any sandbox (``--no-build`` / ``--only-binary :all:``);
installing a wheel only copies files.

A new environment is built in a generation directory of its own and the plugin's link is
replaced in one ``rename`` once it is complete (see :mod:`bot.rosey.plugin_envs`): a failed
install, for whatever reason, leaves the previous environment in place and in use.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import fcntl
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from bot.rosey.errors import PluginEnvironmentError
from bot.rosey.plugin_envs import STAMP_FILE, PluginEnvironment, python_tag

__all__ = ["INSTALLER_ENV", "IndexSettings", "InstallResult", "Installer", "install", "pip_settings"]

logger = logging.getLogger(__name__)

#: Chooses the installer: ``uv`` or ``pip`` (default: uv where its binary is found).
INSTALLER_ENV = "ROSEY_INSTALLER"
#: How long one installer run may take before it counts as failed.
INSTALL_TIMEOUT = 900.0


class Installer(StrEnum):
    UV = "uv"
    PIP = "pip"


@dataclass(frozen=True, kw_only=True)
class IndexSettings:
    """The operator's pip configuration, as far as where packages come from."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    no_index: bool = False
    cert: str | None = None
    timeout: str | None = None

    def uv_arguments(self) -> list[str]:
        args: list[str] = []
        if self.no_index:
            args.append("--no-index")
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        if self.extra_index_urls:
            # pip searches every index and takes the best version; uv by default stops at the
            # first index that has the name. The operator configured pip's meaning.
            args += ["--index-strategy", "unsafe-best-match"]
        for location in self.find_links:
            args += ["--find-links", location]
        for constraint in self.constraints:
            args += ["--constraint", constraint]
        return args

    def uv_environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.cert:
            env["SSL_CERT_FILE"] = self.cert
        if self.timeout:
            env["UV_HTTP_TIMEOUT"] = self.timeout
        return env


def _values(raw: str) -> tuple[str, ...]:
    return tuple(raw.split())


def pip_settings(python: str | None = None) -> IndexSettings:
    """What ``pip config list`` says (files and ``PIP_*`` variables); empty where pip is absent."""
    try:
        done = subprocess.run(
            [python or sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return IndexSettings()
    if done.returncode != 0:
        return IndexSettings()
    # pip prints "section.key='value'"; variables (":env:") win over "install", which wins over "global".
    rank = {":env:": 3, "install": 2, "global": 1}
    found: dict[str, tuple[int, str]] = {}
    for line in done.stdout.splitlines():
        name, sep, quoted = line.partition("=")
        section, _, key = name.rpartition(".")
        if not sep or section not in rank:
            continue
        try:
            value = ast.literal_eval(quoted)
        except (ValueError, SyntaxError):
            continue
        if not isinstance(value, str):
            continue
        if key not in found or rank[section] >= found[key][0]:
            found[key] = (rank[section], value)

    def get(key: str) -> str | None:
        return found[key][1] if key in found else None

    return IndexSettings(
        index_url=get("index-url"),
        extra_index_urls=_values(get("extra-index-url") or ""),
        find_links=_values(get("find-links") or ""),
        constraints=_values(get("constraint") or ""),
        no_index=(get("no-index") or "").lower() in ("1", "true", "yes", "on"),
        cert=get("cert"),
        timeout=get("default-timeout") or get("timeout"),
    )


def find_uv() -> str | None:
    """uv's binary: the one the ``uv`` package installed beside Rosey, else one on PATH."""
    try:
        import uv  # type: ignore[import-untyped,unused-ignore]

        found = str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv") or ""
    return found or None


def choose_installer(environ: Mapping[str, str] | None = None) -> tuple[Installer, str]:
    """The installer to use and why, in words."""
    source = os.environ if environ is None else environ
    asked = source.get(INSTALLER_ENV, "").strip().lower()
    if asked == Installer.PIP:
        return Installer.PIP, f"${INSTALLER_ENV}=pip"
    if find_uv() is not None:
        return Installer.UV, f"${INSTALLER_ENV}=uv" if asked == Installer.UV else "uv found"
    if asked == Installer.UV:
        raise PluginEnvironmentError(f"${INSTALLER_ENV}=uv but uv is not installed (pip install uv)")
    return Installer.PIP, "uv not found, pip instead"


@dataclass(frozen=True, kw_only=True)
class InstallResult:
    plugin: str
    venv: Path
    installer: str  # "uv 0.13.9"
    seconds: float
    requirements: tuple[str, ...]
    output: str = field(default="", repr=False)


def one_line(output: str, returncode: int) -> str:
    """The installer's reason for failing, in one line: uv's ``error:`` with its last ``cause:``
    (what it prints without a terminal), or pip's last ``ERROR:`` line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    first = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    if first is not None:
        head = lines[first].removeprefix("error:").strip()
        causes = [
            line.removeprefix("cause:").strip() for line in lines[first + 1 :] if line.startswith("cause:")
        ]
        return (f"{head}: {causes[-1]}" if causes else head).rstrip(".")
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[-1]
    return lines[-1] if lines else f"the installer exited with status {returncode}"


def _run(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> tuple[int, str]:
    logger.debug("running %s", " ".join(argv))
    try:
        done = subprocess.run(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else ""
        return -1, out + f"\nerror: the installer took longer than {INSTALL_TIMEOUT:.0f} s\n"
    except OSError as exc:
        return -1, f"error: cannot run {argv[0]}: {exc}\n"
    return done.returncode, done.stdout


@contextlib.contextmanager
def _locked(root: Path, plugin: str) -> Iterator[None]:
    """One install per plugin at a time (a second waits for the first)."""
    with open(root / f".{plugin}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _generations(root: Path, plugin: str) -> list[Path]:
    return [p for p in root.glob(f"{plugin}.*") if p.is_dir() and not p.is_symlink()]


def _prune(root: Path, plugin: str, keep: set[Path]) -> None:
    """Remove this plugin's generations but ``keep`` (the one in use and the one before it: a
    plugin still running from the previous one keeps its files until it restarts)."""
    for generation in _generations(root, plugin):
        if generation.resolve() not in keep:
            shutil.rmtree(generation, ignore_errors=True)


def install(
    env: PluginEnvironment,
    *,
    settings: IndexSettings | None = None,
    environ: Mapping[str, str] | None = None,
) -> InstallResult:
    """Build ``env``'s environment from its dependency file and make it the one in use.

    Raises PluginEnvironmentError (one line; ``.output`` has the installer's) and then nothing
    has changed: the previous environment, if any, is still the one the plugin starts with.
    """
    name = env.plugin
    if env.problem:
        raise PluginEnvironmentError(env.problem, plugin=name)
    if env.directory is None:
        raise PluginEnvironmentError(
            f"plugin '{name}' has no directory of its own (a single file beside others): move it to "
            f"plugins/{name}/ and put its requirements.txt next to it",
            plugin=name,
        )
    if env.dependencies is None:
        raise PluginEnvironmentError(
            f"plugin '{name}' declares no dependencies: add a requirements.txt (one package per line) or "
            f"[project] dependencies in a pyproject.toml to {env.directory}",
            plugin=name,
        )
    source = os.environ if environ is None else environ
    installer, why = choose_installer(source)
    root = env.link.parent
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with _locked(root, name):
        previous = env.venv
        build = root / f"{name}.{datetime.datetime.now(datetime.UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        try:
            version, output = _build(installer, build, env.dependencies.requirements, settings, source, root)
        except PluginEnvironmentError as exc:
            shutil.rmtree(build, ignore_errors=True)
            exc.plugin = name
            raise
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        stamp = {
            "digest": env.dependencies.digest,
            "file": str(env.dependencies.file),
            "python": python_tag(),
            "installer": version,
            "chosen_because": why,
            "built": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        (build / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
        # The swap: a new link beside the old one, renamed over it (atomic), never a directory
        # moved over a directory (which rename() cannot do).
        new_link = root / f".{name}.link-{secrets.token_hex(4)}"
        os.symlink(build.name, new_link)
        try:
            os.replace(new_link, env.link)
        except OSError as exc:
            new_link.unlink(missing_ok=True)
            shutil.rmtree(build, ignore_errors=True)
            raise PluginEnvironmentError(
                f"cannot put the new environment in place at {env.link}: {exc}", plugin=name
            ) from exc
        _prune(root, name, {build.resolve(), *([previous] if previous is not None else [])})
    return InstallResult(
        plugin=name,
        venv=build,
        installer=version,
        seconds=time.monotonic() - started,
        requirements=env.dependencies.requirements,
        output=output,
    )


def _build(
    installer: Installer,
    build: Path,
    requirements: tuple[str, ...],
    settings: IndexSettings | None,
    environ: Mapping[str, str],
    cwd: Path,
) -> tuple[str, str]:
    """Create the environment at ``build`` and install ``requirements``: (installer version, output)."""
    env = dict(environ)
    env.pop("VIRTUAL_ENV", None)  # the installer targets the new environment, not Rosey's
    outputs: list[str] = []

    def step(argv: list[str], extra_env: Mapping[str, str] | None = None) -> None:
        code, out = _run(argv, {**env, **(extra_env or {})}, cwd)
        outputs.append(f"$ {' '.join(argv)}\n{out}")
        if code != 0:
            raise PluginEnvironmentError(one_line(out, code), output="\n".join(outputs))

    # The requirements go on the command line, one argument each (never through a shell): the
    # installer's error then quotes the line as the plugin wrote it. None starts with "-".
    if installer is Installer.UV:
        uv = find_uv()
        assert uv is not None  # choose_installer found it
        code, out = _run([uv, "--version"], env, cwd)
        version = " ".join(out.split()[:2]) if code == 0 else "uv"
        settings = settings if settings is not None else pip_settings()
        uv_env = {
            **settings.uv_environment(),
            # Plugin directories may hold uv.toml or [tool.uv]: they must not choose the index.
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
        }
        step([uv, "venv", "--quiet", "--relocatable", "--python", sys.executable, str(build)], uv_env)
        if requirements:
            step(
                [
                    uv,
                    "pip",
                    "install",
                    "--python",
                    str(build / "bin" / "python"),
                    "--no-build",
                    *settings.uv_arguments(),
                    *requirements,
                ],
                uv_env,
            )
    else:
        code, out = _run([sys.executable, "-m", "pip", "--version"], env, cwd)
        version = " ".join(out.split()[:2]) if code == 0 else "pip"
        step([sys.executable, "-m", "venv", "--without-pip", str(build)])
        if requirements:
            # pip reads the operator's configuration itself.
            step(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "--python",
                    str(build / "bin" / "python"),
                    "install",
                    "--no-input",
                    "--only-binary",
                    ":all:",
                    *requirements,
                ]
            )
    return version, "\n".join(outputs)
